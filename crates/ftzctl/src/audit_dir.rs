//! Audit exports: the directory `ftzctl audit export` writes from a node, and reading one back
//! for the offline checks (`verify-log`, `cross-check`).
//!
//! ```text
//! DIR/checkpoint              the cosigned checkpoint (c2sp.org/signed-note, tlog-checkpoint)
//! DIR/keys                    verifier keys, one vkey per line: the log's first, then witnesses
//! DIR/entries/<index>         each leaf's bytes, exactly as hashed into the log
//! DIR/proofs/<index>.tlog-proof   c2sp.org/tlog-proof of that entry under DIR/checkpoint
//! ```
//!
//! An export is written into a hidden sibling directory and renamed into place when complete,
//! so a failed or interrupted export never leaves a directory that looks whole.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ftz_audit::{
    checkpoint::{Checkpoint, TlogProof},
    merkle::{MemoryTree, inclusion_proof},
    note::{Note, TYPE_ED25519, Verifier},
    offline::{CrossReport, KeyRing, LogReport, LogVerifier, TransfersBetween, compare, open_checkpoint},
};
use ftz_proto::{GetCheckpointRequest, GetCheckpointResponse, ListEntriesRequest, audit_client::AuditClient};
use tonic::transport::Channel;

pub const CHECKPOINT: &str = "checkpoint";
pub const KEYS: &str = "keys";
pub const ENTRIES: &str = "entries";
pub const PROOFS: &str = "proofs";

/// The path of entry `index`'s proof in an export.
pub fn proof_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(PROOFS).join(format!("{index}.tlog-proof"))
}

pub fn entry_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(ENTRIES).join(index.to_string())
}

/// The zone whose log a checkpoint is of, from its origin `ftz/<zone>/audit`.
pub fn zone_of_origin(origin: &str) -> Option<&str> {
    origin.strip_prefix("ftz/")?.strip_suffix("/audit").filter(|z| !z.is_empty() && !z.contains('/'))
}

/// The checkpoint's statement, without checking any signature.
pub fn checkpoint_of(note: &str) -> Result<Checkpoint> {
    let note = Note::parse(note).map_err(|e| anyhow!("checkpoint: {e}"))?;
    Checkpoint::parse(&note.text).map_err(|e| anyhow!("{e}"))
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub zone: String,
    pub size: u64,
    /// Witness cosignatures on the exported checkpoint that verify with the exported keys.
    pub cosigners: usize,
    pub keys: usize,
}

/// Witness cosignatures on a checkpoint, checked against the keys the node gave.
pub fn cosigners(cp: &GetCheckpointResponse) -> Result<usize> {
    let ring = KeyRing::parse(&cp.keys.join("\n")).map_err(|e| anyhow!("{e}"))?;
    let log = ring.keys.first().ok_or_else(|| anyhow!("the node gave no log key"))?;
    let (_, n) = open_checkpoint(&cp.checkpoint, log, &ring.witnesses(), 0).map_err(|e| anyhow!("{e}"))?;
    Ok(n)
}

/// Waits until the node's latest checkpoint covers its whole log (as it stood when asked) and
/// carries at least `cosigners` verified witness cosignatures, then returns it. Checkpoints
/// follow new entries within about a second, and cosignatures right after.
pub async fn settled_checkpoint(
    client: &mut AuditClient<Channel>,
    cosigners: usize,
    timeout: std::time::Duration,
) -> Result<GetCheckpointResponse> {
    let deadline = tokio::time::Instant::now() + timeout;
    let size = client
        .list_entries(ListEntriesRequest { from_index: u64::MAX, limit: 1, ..Default::default() })
        .await?
        .into_inner()
        .log_size;
    loop {
        let got = match client.get_checkpoint(GetCheckpointRequest {}).await {
            Ok(r) => Some(r.into_inner()),
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(s.into()),
        };
        if let Some(cp) = got {
            let n = self::cosigners(&cp)?;
            if cp.size >= size && n >= cosigners {
                return Ok(cp);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("after {timeout:?} the checkpoint covers {} of {size} entries with {n} cosignature(s)", cp.size);
            }
        } else if tokio::time::Instant::now() >= deadline {
            bail!("after {timeout:?} no checkpoint has been signed");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Exports the node's log up to its latest checkpoint into `out` (which must not exist).
/// `progress(done, total)` is called as entries arrive.
pub async fn export(
    client: &mut AuditClient<Channel>,
    out: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary> {
    if out.exists() {
        bail!("{} exists; an export goes into a new directory", out.display());
    }
    let cp = client.get_checkpoint(GetCheckpointRequest {}).await?.into_inner();
    let ring = KeyRing::parse(&cp.keys.join("\n")).map_err(|e| anyhow!("the node's keys: {e}"))?;
    let log = ring.keys.first().ok_or_else(|| anyhow!("the node gave no log key"))?.clone();
    let (statement, cosigners) = open_checkpoint(&cp.checkpoint, &log, &ring.witnesses(), 0)
        .map_err(|e| anyhow!("the node's own checkpoint does not verify: {e}"))?;
    let zone = zone_of_origin(&statement.origin)
        .ok_or_else(|| anyhow!("checkpoint origin {} is not an ftz audit log", statement.origin))?
        .to_string();

    let name = out.file_name().ok_or_else(|| anyhow!("{} is not a directory name", out.display()))?;
    let partial = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(partial.join(ENTRIES)).with_context(|| format!("cannot create {}", partial.display()))?;
    std::fs::create_dir_all(partial.join(PROOFS))?;

    let size = statement.size;
    let mut tree = MemoryTree::new();
    while tree.size() < size {
        let page = client
            .list_entries(ListEntriesRequest { from_index: tree.size(), limit: 1000, ..Default::default() })
            .await?
            .into_inner();
        if page.entries.is_empty() {
            bail!("the node listed no entries from {} although its checkpoint has {size}", tree.size());
        }
        for e in page.entries.into_iter().take_while(|e| e.index < size) {
            if e.index != tree.size() {
                bail!("the node skipped from entry {} to {}", tree.size(), e.index);
            }
            tree.push(&e.leaf);
            std::fs::write(entry_path(&partial, e.index), &e.leaf)?;
        }
        progress(tree.size(), size);
    }
    if tree.root_at(size) != statement.root {
        bail!("the node's entries do not give the root of its own checkpoint at size {size}: do not trust this log");
    }
    for index in 0..size {
        let hashes = match inclusion_proof(&tree, index, size) {
            Ok(p) => p.map_err(|e| anyhow!("{e}"))?,
            Err(never) => match never {},
        };
        let proof = TlogProof { extra: None, index, hashes, checkpoint: cp.checkpoint.clone() };
        std::fs::write(proof_path(&partial, index), proof.to_text())?;
    }
    std::fs::write(partial.join(CHECKPOINT), &cp.checkpoint)?;
    std::fs::write(partial.join(KEYS), ring.to_text())?;
    std::fs::rename(&partial, out).with_context(|| format!("cannot move the export to {}", out.display()))?;
    Ok(ExportSummary { zone, size, cosigners, keys: ring.keys.len() })
}

/// An export directory, opened for the offline checks.
#[derive(Debug)]
pub struct ExportDir {
    pub dir: PathBuf,
    pub checkpoint: String,
    pub statement: Checkpoint,
    pub zone: String,
    pub keys: KeyRing,
    /// The entry files' indices, ascending.
    pub indices: Vec<u64>,
}

impl ExportDir {
    pub fn open(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            String::from_utf8(read_bounded(&p, MAX_TEXT_FILE)?).with_context(|| format!("{} is not text", p.display()))
        };
        let checkpoint = read(CHECKPOINT)?;
        let statement = checkpoint_of(&checkpoint)?;
        let zone = zone_of_origin(&statement.origin)
            .ok_or_else(|| anyhow!("checkpoint origin {} is not an ftz audit log", statement.origin))?
            .to_string();
        let keys = KeyRing::parse(&read(KEYS)?).map_err(|e| anyhow!("{}: {e}", dir.join(KEYS).display()))?;
        let entries = dir.join(ENTRIES);
        let mut indices = Vec::new();
        for f in std::fs::read_dir(&entries).with_context(|| format!("cannot list {}", entries.display()))? {
            let name = f?.file_name();
            let name = name.to_string_lossy();
            let index = name
                .parse::<u64>()
                .ok()
                .filter(|i| i.to_string() == name)
                .ok_or_else(|| anyhow!("{}: {name} is not an entry index", entries.display()))?;
            indices.push(index);
        }
        indices.sort_unstable();
        Ok(Self { dir: dir.to_path_buf(), checkpoint, statement, zone, keys, indices })
    }

    pub fn read_entry(&self, index: u64) -> Result<Vec<u8>> {
        read_bounded(&entry_path(&self.dir, index), ftz_audit::leaf::MAX_LEAF_BYTES)
    }

    /// The log's key: `pinned` if given (it must be named for this log), else the export's.
    pub fn log_key(&self, pinned: Option<&Verifier>) -> Result<Verifier> {
        if let Some(k) = pinned {
            if k.name != self.statement.origin {
                bail!("the log key {} is not for this log ({})", k.name, self.statement.origin);
            }
            return Ok(k.clone());
        }
        self.keys
            .keys
            .iter()
            .find(|k| k.name == self.statement.origin && k.sig_type == TYPE_ED25519)
            .cloned()
            .ok_or_else(|| anyhow!("{} has no key for {}", self.dir.join(KEYS).display(), self.statement.origin))
    }

    /// `verify-log`: every entry read once, in bounded memory.
    pub fn verify(&self, pinned: Option<&Verifier>, quorum: usize, progress: impl FnMut(u64)) -> Result<LogReport> {
        Ok(self.verify_gathering(pinned, quorum, None, progress)?.0)
    }

    /// Verifies the log and, in the same pass over the entries, gathers its transfers and
    /// refusals with zone `other` (for `cross-check`).
    fn verify_gathering(
        &self,
        pinned: Option<&Verifier>,
        quorum: usize,
        other: Option<&str>,
        mut progress: impl FnMut(u64),
    ) -> Result<(LogReport, TransfersBetween)> {
        let log = self.log_key(pinned)?;
        let mut v = LogVerifier::new(&self.keys);
        let mut t = TransfersBetween::new(&self.zone, other.unwrap_or_default());
        for &i in &self.indices {
            let bytes = self.read_entry(i)?;
            v.push(i, &bytes);
            // Only what the checkpoint covers: entries past it are not committed to yet.
            if other.is_some() && i < self.statement.size {
                t.push(i, &bytes);
            }
            progress(1);
        }
        Ok((v.finish(&self.checkpoint, &log, &self.keys.witnesses(), quorum), t))
    }
}

/// `cross-check`: both logs verified, then compared transfer by transfer.
pub fn cross_check(
    a: &ExportDir,
    b: &ExportDir,
    mut progress: impl FnMut(u64),
) -> Result<(LogReport, LogReport, CrossReport)> {
    if a.zone == b.zone {
        bail!("both exports are of {}'s log", a.zone);
    }
    let (ra, ta) = a.verify_gathering(None, 0, Some(&b.zone), &mut progress)?;
    let (rb, tb) = b.verify_gathering(None, 0, Some(&a.zone), &mut progress)?;
    Ok((ra, rb, compare(&ta, &tb)))
}

/// The verifier keys of every zone of a signed federation registry the auditor supplies (every
/// node key as log key and as witness, retired ones too: entries signed before a rotation need
/// them), so that an export is checked against keys its exporting zone did not choose. The
/// registry must be signed by `anchor` (an authority key id the auditor trusts) and by its
/// quorum of zone authorities.
pub fn keys_from_registry(path: &Path, anchor: &str) -> Result<KeyRing> {
    let reg = ftz_core::Registry::parse(crate::registry_file::read(path)?)?;
    let anchor: ftz_core::KeyId = anchor.parse().map_err(|_| anyhow!("--anchor must be a 32-digit hex key id"))?;
    let signers = crate::registry_file::self_signers(&reg)
        .map_err(|e| anyhow!("{}: the registry's signatures: {e}", path.display()))?;
    let zones: std::collections::BTreeSet<String> =
        signers.iter().filter_map(|id| reg.find_key(id).map(|(z, _)| z.id.to_string())).collect();
    if !signers.contains(&anchor) || zones.len() < reg.quorum() as usize {
        bail!(
            "{}: registry v{} is not signed by the anchor {anchor} and its quorum of {} zone authorities",
            path.display(),
            reg.version(),
            reg.quorum()
        );
    }
    let mut keys = Vec::new();
    for z in reg.zones() {
        for k in z.keys.iter().filter(|k| k.purpose == ftz_proto::KeyPurpose::Node) {
            keys.extend(ftz_audit::offline::log_verifier(z.id.as_str(), k.key));
            keys.extend(ftz_audit::offline::witness_verifier(z.id.as_str(), k.key));
        }
    }
    Ok(KeyRing { keys })
}

/// The checkpoint and keys files are small: a larger one is not an export.
const MAX_TEXT_FILE: usize = 1024 * 1024;

/// Reads a file of an export: a regular file (an export made by someone else may hold links
/// pointing anywhere on the auditor's machine), of at most `max` bytes.
fn read_bounded(p: &Path, max: usize) -> Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file (links are not followed)", p.display());
    }
    if meta.len() > max as u64 {
        bail!("{} is {} bytes, more than the {max} an export's file may hold", p.display(), meta.len());
    }
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    if bytes.len() > max {
        bail!("{} grew past {max} bytes while read", p.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_files_are_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"ok").unwrap();
        assert_eq!(read_bounded(&small, 10).unwrap(), b"ok");
        assert!(read_bounded(&small, 1).is_err(), "too large");
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&small, &link).unwrap();
            assert!(read_bounded(&link, 10).is_err(), "a link is not followed");
        }
        assert!(read_bounded(dir.path(), 10).is_err(), "a directory is not a file");
    }
}
