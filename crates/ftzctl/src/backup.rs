//! `ftzctl admin backup`: the node's `Admin.Backup` stream written to a file, whole or not at
//! all. The stream goes to a temporary file beside the target; its trailer's SHA-256 is checked
//! against what arrived, the file is fsynced and only then renamed to the target (and the
//! directory fsynced), so a target path never holds half a backup. The file's format is the
//! node's (ftz-node's `backup` module; `ftz-node restore` reads it).

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use ftz_proto::{BackupRequest, admin_client::AdminClient};
use tonic::transport::Channel;

const MAGIC: &[u8] = b"ftz-backup v1\n";
/// The trailer: tag 'Z', length 32, the SHA-256.
const TRAILER: usize = 1 + 4 + 32;

/// What was written.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    pub bytes: u64,
    pub entries: u64,
    pub zone: String,
    pub audit_log_size: u64,
    pub checkpoint_size: u64,
    pub sha256: String,
}

/// Streams the node's backup into `out`; `progress(done, total)` after every piece.
pub async fn download(
    client: &mut AdminClient<Channel>,
    out: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Summary> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ftz-backup-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut stream = client.backup(BackupRequest {}).await?.into_inner();
    let (mut done, mut total) = (0u64, 0u64);
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        while let Some(chunk) = stream.message().await? {
            if chunk.total_bytes > 0 {
                total = chunk.total_bytes;
            }
            w.write_all(&chunk.data).context("writing the backup")?;
            done += chunk.data.len() as u64;
            progress(done, total);
        }
        w.flush().context("writing the backup")?;
    }
    if total != 0 && done != total {
        bail!("the node announced {total} bytes and sent {done}: nothing was written to {}", out.display());
    }
    let summary = check(tmp.path()).map_err(|e| anyhow!("{e}: nothing was written to {}", out.display()))?;
    tmp.as_file().sync_all().context("fsync of the backup")?;
    tmp.persist(out).map_err(|e| anyhow!("cannot rename the backup to {}: {}", out.display(), e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Summary { path: out.to_path_buf(), ..summary })
}

/// Checks a backup file's trailer against its content and reads its manifest.
pub fn check(path: &Path) -> Result<Summary> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len();
    if len < (MAGIC.len() + TRAILER) as u64 {
        bail!("the backup is cut short ({len} bytes)");
    }
    let body = len - TRAILER as u64;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut head = Vec::new();
    let mut left = body;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            bail!("the backup is cut short");
        }
        ctx.update(&buf[..n]);
        if head.len() < 1024 * 1024 {
            head.extend_from_slice(&buf[..n]);
        }
        left -= n as u64;
    }
    let mut trailer = [0u8; TRAILER];
    f.read_exact(&mut trailer)?;
    if trailer[0] != b'Z' || trailer[1..5] != 32u32.to_be_bytes() {
        bail!("the backup has no trailer (cut short?)");
    }
    let sha = ctx.finish();
    if sha.as_ref() != &trailer[5..] {
        bail!("the backup's SHA-256 is not the one its trailer states: it is corrupt");
    }
    if !head.starts_with(MAGIC) || head.get(MAGIC.len()) != Some(&b'M') || head.len() < MAGIC.len() + 5 {
        bail!("not a backup of ftz-node (ftz-backup v1)");
    }
    let at = MAGIC.len() + 1;
    let mlen = u32::from_be_bytes(head[at..at + 4].try_into().unwrap_or_default()) as usize;
    let manifest: serde_json::Value = head
        .get(at + 4..at + 4 + mlen)
        .and_then(|m| serde_json::from_slice(m).ok())
        .ok_or_else(|| anyhow!("the backup's manifest does not parse"))?;
    let u = |k: &str| manifest.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let entries = manifest
        .get("trees")
        .and_then(|t| t.as_array())
        .map(|t| t.iter().filter_map(|t| t.get("items").and_then(serde_json::Value::as_u64)).sum())
        .unwrap_or(0);
    Ok(Summary {
        path: path.to_path_buf(),
        bytes: len,
        entries,
        zone: manifest.get("zone").and_then(|z| z.as_str()).unwrap_or_default().to_string(),
        audit_log_size: u("audit_log_size"),
        checkpoint_size: u("checkpoint_size"),
        sha256: hex::encode(sha.as_ref()),
    })
}
