//! The backup file: what `Admin.Backup` streams and `ftz-node restore` reads.
//!
//! ```text
//! "ftz-backup v1\n"                      14 bytes of magic
//! record 'M': the manifest, JSON          tag u8, length u32 (big-endian), body
//! record 'E' ...: one per key             body: tree u16 (index in the manifest's list),
//!                                         key length u32, key, value
//! record 'Z': the trailer                 body: SHA-256 of every byte before this record
//! ```
//!
//! Keys come tree by tree, in the manifest's order; the manifest gives each tree's item count
//! and the SHA-256 of its 'E' records (as written, tag and length included). The manifest is
//! first, so it has to be known before any key is sent: the node writes the keys to an unlinked
//! temporary file while it hashes them (the copy is made once, so the checksums are those of
//! what is sent), then streams manifest, keys and trailer. See `ftz_store::backup` for why the
//! copy is consistent at the audit log's cut.

use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use ftz_store::{AuditCut, Store, StoreError};
use serde::{Deserialize, Serialize};

pub(crate) const MAGIC: &[u8] = b"ftz-backup v1\n";
const TAG_MANIFEST: u8 = b'M';
const TAG_ENTRY: u8 = b'E';
const TAG_END: u8 = b'Z';
/// A record larger than this is refused (store values are bounded by the message size).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// The pieces a backup is streamed in.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What a backup holds, as its first record says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub format: String,
    pub zone: String,
    pub store_format_version: u32,
    pub created_at_ms: i64,
    pub node_version: String,
    /// The cut: the audit log's durable size when the backup started, and its root (hex).
    pub audit_log_size: u64,
    pub audit_root: String,
    /// The newest signed checkpoint at or below the cut (its size and note), if any.
    pub checkpoint_size: u64,
    pub checkpoint: Option<String>,
    pub trees: Vec<TreeManifest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TreeManifest {
    pub name: String,
    pub items: u64,
    /// SHA-256 (hex) of the tree's records as written.
    pub sha256: String,
}

pub(crate) const FORMAT: &str = "ftz-backup/1";

#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the backup file is not valid: {0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> BackupError {
    BackupError::Invalid(s.into())
}

fn record(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(body.len() + 5);
    r.push(tag);
    r.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// A backup made, ready to be streamed: its manifest, and its keys in an unlinked temporary file.
pub(crate) struct Prepared {
    head: Vec<u8>,
    body: std::fs::File,
    body_len: u64,
    pub entries: u64,
}

/// Copies the store at `cut` (blocking: run it on the blocking pool). `manifest` comes with
/// everything but the trees, which are filled in here.
pub(crate) fn prepare(store: &Store, cut: AuditCut, mut manifest: Manifest) -> Result<Prepared, BackupError> {
    // Unlinked, in the system's temporary directory: readable by nobody else, gone when closed
    // whatever happens to the process.
    let mut file = tempfile::tempfile()?;
    let mut out = BufWriter::new(&mut file);
    let mut entries = 0u64;
    let mut len = 0u64;
    let trees = store.backup_trees();
    if trees.len() > usize::from(u16::MAX) {
        return Err(invalid("more trees than a backup can name"));
    }
    for (i, name) in trees.iter().enumerate() {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut items = 0u64;
        for kv in store.export_tree(name, cut)? {
            let (k, v) = kv?;
            let mut body = Vec::with_capacity(6 + k.len() + v.len());
            body.extend_from_slice(&u16::try_from(i).unwrap_or(u16::MAX).to_be_bytes());
            body.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_be_bytes());
            body.extend_from_slice(&k);
            body.extend_from_slice(&v);
            let r = record(TAG_ENTRY, &body);
            hash.update(&r);
            out.write_all(&r)?;
            len += r.len() as u64;
            items += 1;
        }
        entries += items;
        manifest.trees.push(TreeManifest { name: name.clone(), items, sha256: hex::encode(hash.finish()) });
    }
    out.flush()?;
    drop(out);
    file.rewind()?;
    let json = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
    let head = [MAGIC, &record(TAG_MANIFEST, &json)].concat();
    Ok(Prepared { head, body: file, body_len: len, entries })
}

/// What is done with each (tree, key, value) read from a backup.
type EachPair<'a> = dyn FnMut(&str, Vec<u8>, Vec<u8>) -> Result<(), BackupError> + 'a;

impl Prepared {
    /// The whole file's size.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.head.len() as u64 + self.body_len + 37
    }

    /// Hands the file to `send` in pieces of at most [`CHUNK`] bytes, in order; stops when
    /// `send` says the receiver is gone. Returns the file's SHA-256 (the trailer's).
    pub(crate) fn stream(self, mut send: impl FnMut(Vec<u8>) -> bool) -> Result<[u8; 32], BackupError> {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        hash.update(&self.head);
        if !send(self.head) {
            return Err(invalid("the client went away"));
        }
        let mut body = BufReader::new(self.body);
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut body, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hash.update(&buf);
            if !send(buf) {
                return Err(invalid("the client went away"));
            }
        }
        let mut sha = [0u8; 32];
        sha.copy_from_slice(hash.finish().as_ref());
        if !send(record(TAG_END, &sha)) {
            return Err(invalid("the client went away"));
        }
        Ok(sha)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads a backup file record by record, hashing everything it reads.
struct RecordReader<R> {
    r: R,
    hash: ring::digest::Context,
}

impl<R: Read> RecordReader<R> {
    fn new(mut r: R) -> Result<Self, BackupError> {
        let mut magic = [0u8; 14];
        if read_full(&mut r, &mut magic)? != MAGIC.len() || magic != MAGIC {
            return Err(invalid("it does not start as a backup of ftz-node does (ftz-backup v1)"));
        }
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        hash.update(MAGIC);
        Ok(Self { r, hash })
    }

    /// The next record: (tag, body). The trailer is not hashed (it is the hash).
    fn next(&mut self) -> Result<Option<(u8, Vec<u8>)>, BackupError> {
        let mut head = [0u8; 5];
        match read_full(&mut self.r, &mut head)? {
            0 => return Ok(None),
            5 => {}
            _ => return Err(invalid("it ends inside a record")),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_RECORD {
            return Err(invalid(format!("a record of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        if read_full(&mut self.r, &mut body)? != len {
            return Err(invalid("it ends inside a record"));
        }
        if head[0] != TAG_END {
            self.hash.update(&head);
            self.hash.update(&body);
        }
        Ok(Some((head[0], body)))
    }
}

/// One key read from a backup: (tree index, key, value).
fn entry(body: &[u8]) -> Result<(usize, Vec<u8>, Vec<u8>), BackupError> {
    if body.len() < 6 {
        return Err(invalid("a short key record"));
    }
    let tree = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let klen = u32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
    let rest = &body[6..];
    if klen > rest.len() {
        return Err(invalid("a key longer than its record"));
    }
    Ok((tree, rest[..klen].to_vec(), rest[klen..].to_vec()))
}

/// Reads and checks the whole file: the magic, the manifest, every key record in tree order,
/// every tree's count and checksum, the trailer's checksum of all before it, nothing after it.
/// With `each`, hands every key to it (tree name, key, value) as it goes; the caller writes
/// them only on a second pass, after a first one without `each` found the file whole.
pub(crate) fn read(r: impl Read, mut each: Option<&mut EachPair<'_>>) -> Result<(Manifest, [u8; 32]), BackupError> {
    let mut rr = RecordReader::new(BufReader::new(r))?;
    let manifest: Manifest = match rr.next()? {
        Some((TAG_MANIFEST, body)) => {
            serde_json::from_slice(&body).map_err(|e| invalid(format!("the manifest does not parse: {e}")))?
        }
        _ => return Err(invalid("it has no manifest first")),
    };
    if manifest.format != FORMAT {
        return Err(invalid(format!("format {:?}, this build reads {FORMAT:?}", manifest.format)));
    }
    let n = manifest.trees.len();
    let mut counts = vec![0u64; n];
    let mut hashes: Vec<ring::digest::Context> =
        (0..n).map(|_| ring::digest::Context::new(&ring::digest::SHA256)).collect();
    let mut current = 0usize;
    let trailer = loop {
        let Some((tag, body)) = rr.next()? else { return Err(invalid("it has no trailer (cut short?)")) };
        match tag {
            TAG_ENTRY => {
                let (tree, k, v) = entry(&body)?;
                if tree >= n || tree < current {
                    return Err(invalid(format!("a key of tree #{tree} out of order")));
                }
                current = tree;
                counts[tree] += 1;
                hashes[tree].update(&record(TAG_ENTRY, &body));
                if let Some(f) = each.as_deref_mut() {
                    f(&manifest.trees[tree].name, k, v)?;
                }
            }
            TAG_END => break body,
            other => return Err(invalid(format!("a record of unknown kind {other}"))),
        }
    };
    let expected = rr.hash.clone().finish();
    if trailer.as_slice() != expected.as_ref() {
        return Err(invalid("its SHA-256 is not the one its trailer states: the file is corrupt"));
    }
    let mut extra = [0u8; 1];
    if rr.r.read(&mut extra)? != 0 {
        return Err(invalid("bytes follow its trailer"));
    }
    for ((t, count), hash) in manifest.trees.iter().zip(&counts).zip(hashes) {
        if *count != t.items {
            return Err(invalid(format!("tree {} holds {count} keys, its manifest says {}", t.name, t.items)));
        }
        if hex::encode(hash.finish()) != t.sha256 {
            return Err(invalid(format!("tree {}'s SHA-256 is not the one its manifest states", t.name)));
        }
    }
    let mut sha = [0u8; 32];
    sha.copy_from_slice(&trailer);
    Ok((manifest, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            zone: "hainan".into(),
            store_format_version: ftz_store::FORMAT_VERSION,
            created_at_ms: 1,
            node_version: "0".into(),
            audit_log_size: 0,
            audit_root: String::new(),
            checkpoint_size: 0,
            checkpoint: None,
            trees: vec![],
        }
    }

    #[test]
    fn a_backup_reads_back_whole_and_any_changed_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        store.put_pending_intent(&[1; 16], 5, b"intent").unwrap();
        let p = prepare(&store, AuditCut { size: 0, leaves_per_tile: 16 }, manifest()).unwrap();
        let total = p.total_bytes();
        let mut file = Vec::new();
        p.stream(|c| {
            file.extend_from_slice(&c);
            true
        })
        .unwrap();
        assert_eq!(file.len() as u64, total);
        let mut keys = Vec::new();
        let mut each = |t: &str, k: Vec<u8>, _v: Vec<u8>| {
            keys.push((t.to_string(), k));
            Ok(())
        };
        let (m, _) = read(file.as_slice(), Some(&mut each)).unwrap();
        assert!(keys.contains(&("pending_intents".to_string(), vec![1; 16])));
        assert_eq!(m.trees.iter().map(|t| t.items).sum::<u64>(), keys.len() as u64);
        for i in [0, 20, file.len() / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(read(bad.as_slice(), None).is_err(), "byte {i} changed");
        }
        assert!(read(&file[..file.len() - 1], None).is_err(), "cut short");
        assert!(read([file.as_slice(), b"x"].concat().as_slice(), None).is_err(), "a byte more");
    }
}
