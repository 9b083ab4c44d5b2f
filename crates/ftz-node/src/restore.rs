//! `ftz-node restore --config node.toml --from FILE`: writes a backup (from `Admin.Backup`,
//! `ftzctl admin backup`) into the node's empty data directory, before any node runs on it.
//!
//! Nothing is written until the whole file has been read and checked: the magic, the manifest
//! (its zone is the config's, its store format this build's), every tree's item count and
//! SHA-256, the trailer's SHA-256 of all before it. Then the store is created, the keys written
//! (a second read, checked again), the audit log's root at the cut compared with the manifest's,
//! and the store flushed and marked restored (meta `restored_from`: the cut's size). A node
//! starting on a store so marked keeps its log shut until its witnesses have confirmed it
//! (`restored`).

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use ftz_store::{RestoredMarker, Store, StoreOptions};

use crate::{audit::tree::TreeReader, backup, config::NodeConfig};

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub zone: String,
    pub keys: u64,
    pub audit_log_size: u64,
    pub checkpoint_size: u64,
    pub created_at_ms: i64,
    pub sha256: String,
}

/// Whether `dir` is missing or holds nothing.
fn empty_or_missing(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading data directory {}", dir.display())),
    }
}

/// Restores `from` into the data directory of the node configured by `config`.
pub fn restore(config: &Path, from: &Path, now_ms: i64) -> anyhow::Result<Restored> {
    let cfg = NodeConfig::load(config)?;
    cfg.validate()?;
    let zone = cfg.zone()?;
    let dir = cfg.data_dir.clone();
    let sled = cfg.store.engine == crate::config::StoreEngine::Sled;
    if sled && !empty_or_missing(&dir)? {
        bail!(
            "data directory {} is not empty: a restore writes only into an empty or missing directory (stop the node and move the directory aside first); nothing was written",
            dir.display()
        );
    }
    // PostgreSQL: the configured database must hold no store (read only: nothing is written
    // before the backup has been checked).
    if !sled {
        let mut probe = cfg.store.postgres()?;
        probe.create = false;
        match Store::open_postgres(probe) {
            Err(ftz_store::StoreError::Absent) => {}
            Ok(store) if store.is_empty_store()? => {}
            Ok(_) => bail!(
                "the PostgreSQL store at {} is not empty: a restore writes only into a database that holds no store (stop the zone's nodes and give the restore a new database); nothing was written",
                crate::config::redact_url(cfg.store.url.as_deref().unwrap_or(""))
            ),
            Err(e) => return Err(e.into()),
        }
    }
    let open = || File::open(from).with_context(|| format!("opening backup {}", from.display()));
    let (manifest, sha) =
        backup::read(open()?, None).with_context(|| format!("{}: nothing was written", from.display()))?;
    if manifest.zone != zone.as_str() {
        bail!(
            "{} is a backup of zone {}, this node is zone {zone}: nothing was written",
            from.display(),
            manifest.zone
        );
    }
    if manifest.store_format_version != ftz_store::FORMAT_VERSION {
        bail!(
            "{} holds store format {}, this build writes format {}: nothing was written",
            from.display(),
            manifest.store_format_version,
            ftz_store::FORMAT_VERSION
        );
    }
    // sled: a new store in the data directory; PostgreSQL: the configured database, which
    // must hold no store yet (`import_begin` refuses one that does).
    let store = if sled {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("data directory {}", dir.display()))?;
        }
        Store::open(&dir, StoreOptions { cache_capacity_bytes: cfg.store.cache_capacity_mb * 1024 * 1024 })?
    } else {
        crate::node::open_store(&cfg)?
    };
    let mut importer = store.import_begin()?;
    let mut put = |tree: &str, k: Vec<u8>, v: Vec<u8>| importer.put(tree, &k, &v).map_err(backup::BackupError::from);
    let written = backup::read(open()?, Some(&mut put));
    let again = match written {
        Ok((_, again)) => again,
        Err(e) => bail!(
            "{} changed or could not be read while it was written ({e}): the data directory {} is incomplete; delete it and restore again",
            from.display(),
            dir.display()
        ),
    };
    if again != sha {
        bail!("{} changed while it was restored: delete {} and restore again", from.display(), dir.display());
    }
    let keys = importer.finish(RestoredMarker { audit_size: manifest.audit_log_size, restored_at_ms: now_ms })?;
    let size = store.audit_size()?;
    let root = ftz_audit::merkle::root(&TreeReader::uncached(&store), size)?;
    if size != manifest.audit_log_size || hex::encode(root) != manifest.audit_root {
        bail!(
            "the restored audit log (size {size}) does not have the root the manifest states at size {}: delete {} ; the backup is not usable",
            manifest.audit_log_size,
            dir.display()
        );
    }
    store.flush()?;
    Ok(Restored {
        data_dir: dir,
        zone: manifest.zone,
        keys,
        audit_log_size: manifest.audit_log_size,
        checkpoint_size: manifest.checkpoint_size,
        created_at_ms: manifest.created_at_ms,
        sha256: hex::encode(sha),
    })
}
