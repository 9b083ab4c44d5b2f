//! The node's durable state. Every storage call in the project is in this crate, behind a
//! typed interface, on either engine (`kv`): sled, embedded (the default), or PostgreSQL (a
//! zone that outgrows one machine, several replicas of its node on one database).
//!
//! Durability rule: a write method returns only after the data is durable (on sled: flushed to
//! disk; on PostgreSQL: committed). Callers acknowledge to their own callers after that, never
//! before (sled only flushes every 500 ms on its own).
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
mod kv;
mod migrate;
mod outbox;
mod pg;
mod policies;
mod records;
mod registry;
mod retention;

use std::path::Path;

use thiserror::Error;

pub use audit::{AuditBatch, PendingIntent};
pub use backup::{AuditCut, Exported, Importer, RestoredMarker};
pub use migrate::{BatchLimits, Difference, PostgresTarget, Tally, TargetContents, TreeComparison, show_key};
pub use outbox::{MAX_OUTBOX_ITEMS, OutboxItem};
pub use pg::{PgOptions, redact_url};
pub use policies::StoredBudget;
pub use records::{InsertOutcome, RecordSource, StoredRecord};
pub use registry::{RegistryInstall, StoredRegistry};
pub use retention::Deletion;

/// The on-disk format this build reads and writes, kept in the `meta` tree at creation and
/// checked by [`Store::open`]. Bumped only when a build can no longer read what an older one
/// wrote (a new tree or meta key that older stores lack is not a new format); every format is
/// listed in docs/architecture.md ("Store formats"), and `tests/fixtures/` keeps a store of each
/// format this build opens.
///
/// - 1: the audit log stored every perfect subtree, leaf hashes included (development builds of
///   2026-11-27 only, before commit 23ba9f8; never released).
/// - 2: the audit log keeps leaf hashes in tiles of 16 and no subtrees below level 4.
pub const FORMAT_VERSION: u32 = 2;

/// What an operator reads when [`Store::open`] finds another format: the version found, the one
/// this build reads, and what to do about it.
fn format_refusal(found: u32) -> String {
    let head = format!("the store holds format version {found}, this build reads format version {FORMAT_VERSION}");
    match found {
        1 => format!(
            "{head}, and has no migration from it. Format 1 was written only by development builds of \
             2026-11-27, before commit 23ba9f8 changed how the audit log's tree is stored, and was never \
             released. To keep that log, start that build's ftz-node on this data directory and export \
             the log with that build's `ftzctl audit export --out DIR`; then move this data \
             directory aside and start this build with an empty one: it creates a new store \
             (format {FORMAT_VERSION}) and a new log."
        ),
        f if f > FORMAT_VERSION => format!(
            "{head}: it was written by a newer build. Run that build (or a newer one) on it; a store \
             is never downgraded."
        ),
        _ => format!("{head}: format {found} is not one any build of ftz-exchange wrote."),
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: flushing to disk failed: {0}")]
    Flush(String),
    /// Opened only to read (`PgOptions::create` false) and there is no store yet.
    #[error("no store here yet: the node creates it at its first start")]
    Absent,
    /// The PostgreSQL engine's database refused or did not answer; nothing was changed.
    #[error("store (PostgreSQL): {0}")]
    Postgres(String),
    /// The store was written in another format (see [`FORMAT_VERSION`]); nothing was changed.
    #[error("{}", format_refusal(*.found))]
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

/// The trees of a store, each an ordered map of byte keys to byte values (`kv::Tree`).
const TREES: &[&str] = &[
    "agreements",
    "audit",
    "budgets",
    "dataset",
    "deadlines",
    "deletions",
    "evidence",
    "holders",
    "lots",
    "meta",
    "outbox",
    "pending_intents",
    "policies",
    "policy_revocations",
    "received",
    "records",
    "registry",
    "registry_history",
    "witness",
];

/// The node's store: one sled database in the node's data directory, or one PostgreSQL
/// database that the replicas of the zone's node share.
#[derive(Clone, Debug)]
pub struct Store {
    db: kv::Engine,
    registry: kv::Tree,
    registry_history: kv::Tree,
    records: kv::Tree,
    lots: kv::Tree,
    holders: kv::Tree,
    agreements: kv::Tree,
    meta: kv::Tree,
    policies: kv::Tree,
    policy_revocations: kv::Tree,
    budgets: kv::Tree,
    dataset: kv::Tree,
    received: kv::Tree,
    deadlines: kv::Tree,
    deletions: kv::Tree,
    audit: kv::Tree,
    pending: kv::Tree,
    witness: kv::Tree,
    evidence: kv::Tree,
    outbox: kv::Tree,
    /// Shares flushes among concurrent writers.
    flusher: std::sync::Arc<group_flush::GroupFlush>,
    /// Items in `outbox`, counted once at open (sled's `len` is a scan).
    outbox_count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set on the view [`Store::write_durably`] hands its writes: they skip their own flush,
    /// and one flush after them covers them all.
    defer_flush: bool,
}

const FORMAT_KEY: &[u8] = b"format_version";

/// The format version a store's `meta` tree names (`None`: a new store).
fn stored_format(meta: &kv::Tree) -> Result<Option<u32>, StoreError> {
    meta.get(FORMAT_KEY)?
        .map(|v| {
            v.as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt { what: "format_version", detail: "not 4 bytes".into() })
        })
        .transpose()
}

/// Marks the store in `dir` as written in format `version`, and nothing else: for tests of
/// what a build does with another format's store (a refusal, or later a migration). Not for
/// use on a node's store.
#[doc(hidden)]
pub fn set_format_version_for_tests(dir: &Path, version: u32) -> Result<(), StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .open()
        .map_err(|source| StoreError::Open { path: dir.display().to_string(), source })?;
    db.open_tree("meta")?.insert(FORMAT_KEY, &version.to_be_bytes())?;
    db.flush()?;
    Ok(())
}
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
        Self::with_engine(kv::Engine::Sled(db), true)
    }

    /// Opens the store in a PostgreSQL database (creating or checking its schema, safely when
    /// several replicas start at once). Every replica of the zone's node opens the same one.
    pub fn open_postgres(options: PgOptions) -> Result<Self, StoreError> {
        let create = options.create;
        Self::with_engine(kv::Engine::Postgres(pg::Pg::open(options)?), create)
    }

    fn with_engine(db: kv::Engine, create: bool) -> Result<Self, StoreError> {
        let meta = db.open_tree("meta")?;
        match stored_format(&meta)? {
            None if !create => return Err(StoreError::Absent),
            None => {
                // Replicas starting together: the first to write the format wins, the others
                // read it.
                let _ = meta.compare_and_swap(FORMAT_KEY, None::<&[u8]>, Some(&FORMAT_VERSION.to_be_bytes()))?;
                db.flush()?;
                match stored_format(&meta)? {
                    Some(found) if found != FORMAT_VERSION => return Err(StoreError::Format { found }),
                    _ => {}
                }
            }
            Some(found) if found != FORMAT_VERSION => return Err(StoreError::Format { found }),
            Some(_) => {}
        }
        let outbox = db.open_tree("outbox")?;
        let outbox_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(outbox.len()?));
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
            defer_flush: false,
            meta,
            db,
        })
    }

    /// A number never handed out before by this store (by any replica sharing it), increasing.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.db.generate_id()
    }

    /// Whether other processes (replicas of this node) may write this store at the same time:
    /// PostgreSQL; a sled store is held by one process (sled locks its directory).
    pub fn is_shared(&self) -> bool {
        matches!(self.db, kv::Engine::Postgres(_))
    }

    /// A digest of what installs change (registry, agreements, policies and their
    /// revocations, the lists kept in `meta`), on a shared store: a replica that sees it change
    /// loads them again, since another replica installed something. `None` on sled, which one
    /// process holds (its installs change its memory as they change the store).
    pub fn config_digest(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.as_postgres() {
            Some(pg) => pg.digest_of(&["agreements", "meta", "policies", "policy_revocations", "registry"]).map(Some),
            None => Ok(None),
        }
    }

    /// Which engine holds this store: "sled" or "postgres".
    pub fn engine(&self) -> &'static str {
        match self.db {
            kv::Engine::Sled(_) => "sled",
            kv::Engine::Postgres(_) => "postgres",
        }
    }

    /// Makes every write so far durable. Write methods call it themselves; this is for shutdown.
    /// Concurrent callers share one sled flush (group commit: see `group_flush`).
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.defer_flush {
            return Ok(());
        }
        if !self.db.needs_flush() {
            return Ok(());
        }
        let db = self.db.clone();
        self.flusher.flush(move || db.flush().map_err(|e| e.to_string())).map_err(StoreError::Flush)
    }

    /// This store with its write methods' flushes left out: for a caller that makes its writes
    /// durable itself (with [`Store::flush_async`]) before anyone is told of them. The audit log's
    /// appender does, to overlap one batch's flush with the next batch's writes.
    pub fn without_flush(&self) -> Store {
        Store { defer_flush: true, ..self.clone() }
    }

    /// The store's size on disk, in bytes (for the node's metrics).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk()
    }

    /// [`Store::flush`] for async callers: waits for a shared flush without holding a thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        if !self.db.needs_flush() {
            return Ok(());
        }
        let db = self.db.clone();
        self.flusher.flush_async(move || db.flush().map_err(|e| e.to_string())).await.map_err(StoreError::Flush)
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

/// The typed store's tests run on both engines: each test gets one place per engine and runs
/// its body on each (PostgreSQL: a throwaway cluster of its own, see `ftz-pgtest`, which fails
/// saying how to install PostgreSQL when it is missing).
#[cfg(test)]
pub(crate) mod testing {
    use super::{PgOptions, Store, StoreOptions};

    /// Where one test's store lives; [`Place::open`] again is a restart.
    pub(crate) enum Place {
        Sled(tempfile::TempDir),
        Postgres(ftz_pgtest::TempPostgres),
    }

    impl Place {
        pub(crate) fn open(&self) -> Store {
            match self {
                Self::Sled(dir) => Store::open(dir.path(), StoreOptions::default()).unwrap(),
                Self::Postgres(pg) => {
                    let mut o = PgOptions::new(pg.url("store"));
                    o.timeout = std::time::Duration::from_secs(10);
                    Store::open_postgres(o).unwrap()
                }
            }
        }
    }

    /// Backups copy the trees [`super::TREES`] names: every tree a store opens must be there.
    #[test]
    fn every_tree_a_store_opens_is_one_a_backup_copies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let super::kv::Engine::Sled(db) = &store.db else { unreachable!("a sled store") };
        let mut opened: Vec<String> = db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n != "__sled__default")
            .collect();
        opened.sort();
        assert_eq!(opened, super::TREES, "TREES (kept sorted) must list every tree `with_engine` opens");
    }

    /// A new place on each engine.
    pub(crate) fn places() -> Vec<Place> {
        let pg = ftz_pgtest::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        pg.create_database("store").unwrap_or_else(|e| panic!("{e}"));
        vec![Place::Sled(tempfile::tempdir().unwrap()), Place::Postgres(pg)]
    }
}
