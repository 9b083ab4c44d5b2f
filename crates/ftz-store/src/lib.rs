//! The node's durable state. Every sled call in the project is in this crate, behind a typed
//! interface, so that another engine could stand behind it later.
//!
//! Durability rule: a write method returns only after the data is flushed to disk. Callers
//! acknowledge to their own callers after that, never before (sled only flushes every 500 ms
//! on its own).
//!
//! Values are encoded by [`codec`]: small, versioned, hand-written binary records, so that what
//! is on disk does not change when a protobuf message grows a field.

#![forbid(unsafe_code)]

mod agreements;
mod audit;
mod backup;
mod codec;
mod data;
mod group_flush;
mod outbox;
mod policies;
mod records;
mod registry;
mod retention;

use std::path::Path;

use thiserror::Error;

pub use audit::{AuditBatch, PendingIntent};
pub use backup::{AuditCut, Exported, RestoredMarker};
pub use outbox::{MAX_OUTBOX_ITEMS, OutboxItem};
pub use policies::StoredBudget;
pub use records::{InsertOutcome, RecordSource, StoredRecord};
pub use registry::{RegistryInstall, StoredRegistry};
pub use retention::Deletion;

/// The on-disk format this build reads and writes. 2: the audit log keeps leaf hashes in tiles
/// of 16 and no subtrees below level 4.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: flushing to disk failed: {0}")]
    Flush(String),
    #[error("store holds format version {found}, this build reads version {FORMAT_VERSION}")]
    Format { found: u32 },
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("concurrent change: expected registry version {expected:?}, found {found:?}")]
    Conflict { expected: Option<u64>, found: Option<u64> },
}

#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// sled's page cache. Its default is 1 GiB; a node sets it so its memory stays bounded.
    pub cache_capacity_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { cache_capacity_bytes: 32 * 1024 * 1024 }
    }
}

/// The node's store: one sled database in the node's data directory.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    registry: sled::Tree,
    registry_history: sled::Tree,
    records: sled::Tree,
    lots: sled::Tree,
    holders: sled::Tree,
    agreements: sled::Tree,
    meta: sled::Tree,
    policies: sled::Tree,
    policy_revocations: sled::Tree,
    budgets: sled::Tree,
    dataset: sled::Tree,
    received: sled::Tree,
    deadlines: sled::Tree,
    deletions: sled::Tree,
    audit: sled::Tree,
    pending: sled::Tree,
    witness: sled::Tree,
    evidence: sled::Tree,
    outbox: sled::Tree,
    /// Shares flushes among concurrent writers.
    flusher: std::sync::Arc<group_flush::GroupFlush>,
    /// Items in `outbox`, counted once at open (sled's `len` is a scan).
    outbox_count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Serialises writes of signed checkpoints (a new one, or a cosignature added), so that the
    /// latest never goes back and no cosignature is lost.
    checkpoint_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Set on the view [`Store::write_durably`] hands its writes: they skip their own flush,
    /// and one flush after them covers them all.
    defer_flush: bool,
}

const FORMAT_KEY: &[u8] = b"format_version";
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl Store {
    /// Opens (or creates) the store in `dir`. sled locks the directory, so a second node on the
    /// same data directory fails here with a clear error instead of corrupting it.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let config =
            sled::Config::new().path(dir).cache_capacity(opts.cache_capacity_bytes).mode(sled::Mode::HighThroughput);
        // sled's background threads can hold the directory's lock for a moment after the
        // previous handle is dropped (a restart within the same process, or right after a
        // stop): wait a little for it instead of failing a restart.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if waited < LOCK_WAIT && e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(LOCK_POLL);
                    waited += LOCK_POLL;
                }
                Err(source) => return Err(StoreError::Open { path: dir.display().to_string(), source }),
            }
        };
        let meta = db.open_tree("meta")?;
        match meta.get(FORMAT_KEY)? {
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt { what: "format_version", detail: "not 4 bytes".into() })?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::Format { found });
                }
            }
        }
        let outbox = db.open_tree("outbox")?;
        let outbox_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(outbox.len()));
        Ok(Self {
            registry: db.open_tree("registry")?,
            registry_history: db.open_tree("registry_history")?,
            records: db.open_tree("records")?,
            lots: db.open_tree("lots")?,
            holders: db.open_tree("holders")?,
            agreements: db.open_tree("agreements")?,
            policies: db.open_tree("policies")?,
            policy_revocations: db.open_tree("policy_revocations")?,
            budgets: db.open_tree("budgets")?,
            dataset: db.open_tree("dataset")?,
            received: db.open_tree("received")?,
            deadlines: db.open_tree("deadlines")?,
            deletions: db.open_tree("deletions")?,
            audit: db.open_tree("audit")?,
            pending: db.open_tree("pending_intents")?,
            witness: db.open_tree("witness")?,
            evidence: db.open_tree("evidence")?,
            outbox,
            flusher: Default::default(),
            outbox_count,
            checkpoint_lock: Default::default(),
            defer_flush: false,
            meta,
            db,
        })
    }

    /// Makes every write so far durable. Write methods call it themselves; this is for shutdown.
    /// Concurrent callers share one sled flush (group commit: see `group_flush`).
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.defer_flush {
            return Ok(());
        }
        let db = self.db.clone();
        self.flusher.flush(move || db.flush().map(|_| ()).map_err(|e| e.to_string())).map_err(StoreError::Flush)
    }

    /// This store with its write methods' flushes left out: for a caller that makes its writes
    /// durable itself (with [`Store::flush_async`]) before anyone is told of them. The audit log's
    /// appender does, to overlap one batch's flush with the next batch's writes.
    pub fn without_flush(&self) -> Store {
        Store { defer_flush: true, ..self.clone() }
    }

    /// [`Store::flush`] for async callers: waits for a shared flush without holding a thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        self.flusher
            .flush_async(move || db.flush().map(|_| ()).map_err(|e| e.to_string()))
            .await
            .map_err(StoreError::Flush)
    }

    /// Runs `write` (any of this store's write methods, one or several) in place, then returns
    /// once one flush after it made it durable. For async callers on hot paths: the writes are
    /// in-memory sled operations, and the wait for the disk holds no thread, so no blocking-pool
    /// hand-off per write and several writes share one flush. Like every write here, the result
    /// may be acknowledged once this returns, never before.
    pub async fn write_durably<T>(&self, write: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let out = write(&self.without_flush())?;
        self.flush_async().await?;
        Ok(out)
    }
}

impl ftz_core::Refusal for StoreError {
    fn refusal_reason(&self) -> ftz_core::Reason {
        ftz_core::Reason::StoreFailure
    }

    /// Paths and sled's own words stay in the node's log.
    fn public_message(&self) -> String {
        "the node's store failed; nothing was changed".into()
    }
}
