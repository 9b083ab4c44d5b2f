//! `ftz-node migrate-store --from DIR --to URL`: moves a zone's store from sled (its data
//! directory) into an empty PostgreSQL database, and proves the copy exact before it says so.
//!
//! The node must be stopped: sled's lock on the directory is held by a running node, and this
//! holds it itself while it copies, so nothing changes under the copy (it is a snapshot, unlike
//! an online backup). The target must hold no store: a migration never merges into or
//! overwrites one, because a half-merged store would be two histories in one log.
//!
//! Steps: every tree of a store (`Store::backup_trees`) is copied in key order in bounded
//! batches (`ftz_store::BatchLimits`: memory does not grow with the store); the id sequence is
//! moved above every id the sled store handed out; then the PostgreSQL store is opened again,
//! read-only, and compared with sled key by key and value by value (both streamed in order,
//! the counts equal, and no row in the database beyond the copied ones), its audit log's root
//! at the log's size computed on both sides, and the latest signed checkpoint's root checked
//! against the copied log. Only then is the migration reported done. On any difference the
//! target is unusable: the report says what differed and to drop the database and run again
//! (the sled store is left as it was, and stays the zone's store until the node is pointed at
//! the database).

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ftz_audit::{checkpoint::Checkpoint, note::Note};
use ftz_store::{BatchLimits, PgOptions, PostgresTarget, Store, StoreError, StoreOptions, Tally, TargetContents};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::audit::tree::TreeReader;

/// What to migrate, and where to.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The zone's sled store: the node's data directory.
    pub from: PathBuf,
    /// The target database (its URL, and the CA to verify it with for TLS).
    pub to: PgOptions,
    /// Batches of the copy.
    pub limits: BatchLimits,
    /// Show progress on stderr (a bar on a terminal, a line per tree otherwise).
    pub progress: bool,
}

impl MigrateOptions {
    pub fn new(from: impl Into<PathBuf>, to: PgOptions) -> Self {
        Self { from: from.into(), to, limits: BatchLimits::default(), progress: false }
    }
}

/// A migration done and verified: what is now in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrated {
    pub from: PathBuf,
    /// The target's URL without its password.
    pub to: String,
    pub trees: usize,
    pub rows: u64,
    /// Keys plus values, as stored.
    pub bytes: u64,
    pub audit_size: u64,
    /// The audit log's root at `audit_size`, hex: the same on both engines.
    pub audit_root: String,
    /// The latest signed checkpoint's size, whose root was checked on the copied log.
    pub checkpoint_size: Option<u64>,
    /// Every id the PostgreSQL store hands out is above this one (the last the sled store did).
    pub ids_above: u64,
    pub elapsed_ms: u64,
}

/// Why a migration did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Nothing was written anywhere.
    #[error("{0}; nothing was written")]
    Refused(String),
    /// The copy stopped part way: the database holds part of the store.
    #[error(
        "{0}. The database now holds part of the store and must not be used: drop it, create it empty again and run the migration again (the sled store is as it was)"
    )]
    Failed(String),
    /// The copy differs from the sled store.
    #[error(
        "verification failed: the PostgreSQL store differs from the sled store:\n  {}\nDo not start a node on it: drop the database, create it empty again and run the migration again (the sled store is as it was)",
        .0.join("\n  ")
    )]
    Mismatch(Vec<String>),
}

impl MigrateError {
    /// The process's exit code: 3 for a copy that does not verify, 1 otherwise (2 is the
    /// command line's own, clap's).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Mismatch(_) => 3,
            Self::Refused(_) | Self::Failed(_) => 1,
        }
    }

    /// What differed, one line each (empty unless [`MigrateError::Mismatch`]).
    pub fn differences(&self) -> &[String] {
        match self {
            Self::Mismatch(d) => d,
            _ => &[],
        }
    }
}

/// Whether a running node holds the sled store in `dir` (sled's lock on its `db` file).
fn store_in_use(dir: &Path) -> bool {
    std::fs::File::open(dir.join("db"))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

fn in_use(dir: &Path) -> MigrateError {
    MigrateError::Refused(format!(
        "the sled store in {} is in use: a running node holds its lock. Stop the zone's node first \
         (e.g. `systemctl stop ftz-node`): a store is migrated only while nothing writes to it",
        dir.display()
    ))
}

/// Opens the sled store in `dir` without creating one (a mistyped path must not migrate an
/// empty store that this would have made).
fn open_source(dir: &Path) -> Result<Store, MigrateError> {
    if !dir.join("db").is_file() {
        return Err(MigrateError::Refused(format!(
            "{} holds no sled store (no file `db` in it): --from is the node's data directory (`data_dir` in its config)",
            dir.display()
        )));
    }
    if store_in_use(dir) {
        return Err(in_use(dir));
    }
    match Store::open(dir, StoreOptions::default()) {
        Ok(s) => Ok(s),
        Err(StoreError::Open { source, .. }) if source.to_string().contains("could not acquire lock") => {
            Err(in_use(dir))
        }
        Err(e) => Err(MigrateError::Refused(format!("opening the sled store in {}: {e}", dir.display()))),
    }
}

/// Progress on stderr: on a terminal one bar per step (copy, then verification) across all
/// trees; otherwise one line per tree and step, for a log.
struct Progress {
    enabled: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self { enabled, terminal: enabled && std::io::stderr().is_terminal(), bar: None }
    }

    /// A step over every tree, of `len` rows in all if known (the copy does not count first:
    /// on sled that is a scan of the whole store).
    fn step(&mut self, len: Option<u64>) {
        self.finish();
        if !self.terminal {
            return;
        }
        let (bar, template) = match len {
            Some(len) => (ProgressBar::new(len), "{msg} [{bar:30}] {human_pos}/{human_len} rows ({eta})"),
            None => (ProgressBar::new_spinner(), "{spinner} {msg}: {human_pos} rows ({elapsed})"),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    fn tree(&self, what: &str, tree: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{what} {tree}"));
        }
    }

    /// Rows done in the step so far.
    fn at(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(rows);
        }
    }

    fn tree_done(&self, line: impl FnOnce() -> String) {
        if self.enabled && !self.terminal {
            eprintln!("ftz-node: {}", line());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Copies the sled store `options.from` into the PostgreSQL database `options.to` and verifies
/// the copy (see the module's comment).
pub fn migrate(options: &MigrateOptions) -> Result<Migrated, MigrateError> {
    let started = Instant::now();
    let to = ftz_store::redact_url(&options.to.url);
    let source = open_source(&options.from)?;
    let unlisted =
        source.unlisted_trees().map_err(|e| MigrateError::Refused(format!("reading the sled store: {e}")))?;
    if !unlisted.is_empty() {
        return Err(MigrateError::Refused(format!(
            "the sled store holds trees this build does not know ({}): it was written by another build; migrate it with that build",
            unlisted.join(", ")
        )));
    }

    // A store whose latest checkpoint its own log does not match is one no node starts on
    // (`audit::checkpoints`): not one to move, and no copy of it could be verified.
    if let Some((size, text)) =
        source.latest_checkpoint().map_err(|e| MigrateError::Refused(format!("reading the sled store: {e}")))?
        && let Err(why) = checkpoint_matches(&source, size, &text)
    {
        return Err(MigrateError::Refused(format!(
            "the sled store's latest signed checkpoint (size {size}) does not match its own audit log ({why}): a node \
             refuses to start on this store, and a copy of it cannot be verified"
        )));
    }

    // The target: reachable, and holding no store (read only, before anything is written).
    let refused = |e: StoreError| MigrateError::Refused(format!("the target database {to}: {e}"));
    let db = PostgresTarget::connect(&options.to).map_err(refused)?;
    if let TargetContents::Holds { rows, first_tree } = db.contents().map_err(refused)? {
        let rows = if rows >= TargetContents::COUNTED { format!("more than {rows}") } else { format!("{rows}") };
        return Err(MigrateError::Refused(format!(
            "the target database {to} already holds a store ({rows} entries, from tree {first_tree:?} on): a migration \
             writes only into an empty database, it never merges into or overwrites a store. Give it a new database \
             (createdb), or drop this one if it is what an earlier attempt left"
        )));
    }

    // The highest id sled handed out is below this one (sled's ids increase across restarts).
    let failed = |what: &str, e: StoreError| MigrateError::Failed(format!("{what}: {e}"));
    let ids_above =
        source.next_id().map_err(|e| MigrateError::Refused(format!("reading the sled store's ids: {e}")))?;
    let mut progress = Progress::new(options.progress);
    let trees = source.backup_trees();
    let mut copied = Tally::default();
    {
        let mut create = options.to.clone();
        create.create = true;
        // Refused, not failed: nothing but the schema's empty tables can have been created.
        let target = Store::open_postgres(create)
            .map_err(|e| MigrateError::Refused(format!("creating the store in the target database {to}: {e}")))?;
        progress.step(None);
        for tree in &trees {
            progress.tree("copying", tree);
            let base = copied.rows;
            let t = source
                .copy_tree_into(&target, tree, options.limits, &mut |t| progress.at(base + t.rows))
                .map_err(|e| failed(&format!("copying tree {tree}"), e))?;
            progress.tree_done(|| format!("copied tree {tree}: {} rows, {} bytes", t.rows, t.bytes));
            copied.rows += t.rows;
            copied.bytes += t.bytes;
        }
        db.ensure_ids_above(ids_above).map_err(|e| failed("setting the id sequence", e))?;
    }

    // Verification, on the store opened again as a node opens it (read only).
    let mut check = options.to.clone();
    check.create = false;
    let target = Store::open_postgres(check).map_err(|e| failed("opening the copied store again", e))?;
    let verified = verify(&source, &target, Some(&db), copied, ids_above, &mut progress)?;
    Ok(Migrated {
        from: options.from.clone(),
        to,
        trees: trees.len(),
        rows: copied.rows,
        bytes: copied.bytes,
        audit_size: verified.audit_size,
        audit_root: hex::encode(verified.audit_root),
        checkpoint_size: verified.checkpoint_size,
        ids_above,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verified {
    audit_size: u64,
    audit_root: [u8; 32],
    checkpoint_size: Option<u64>,
}

/// Compares `target` with `source` (see the module's comment): every tree key by key, the
/// database's rows with `copied` (when `db` is given), the audit log's size and root, the
/// latest signed checkpoint against the copied log, and the id sequence above `ids_above`.
/// Every difference is reported, not only the first.
fn verify(
    source: &Store,
    target: &Store,
    db: Option<&PostgresTarget>,
    copied: Tally,
    ids_above: u64,
    progress: &mut Progress,
) -> Result<Verified, MigrateError> {
    let failed = |what: &str, e: StoreError| MigrateError::Failed(format!("verifying {what}: {e}"));
    let mut differ = Vec::new();
    let mut source_rows = 0;
    progress.step(Some(copied.rows));
    for tree in source.backup_trees() {
        progress.tree("verifying", &tree);
        let base = source_rows;
        let c = source
            .compare_tree(target, &tree, &mut |t| progress.at(base + t.rows))
            .map_err(|e| failed(&format!("tree {tree}"), e))?;
        progress.tree_done(|| format!("verified tree {tree}: {} rows", c.target.rows));
        source_rows += c.source.rows;
        for d in &c.differences {
            differ.push(format!("tree {tree}: {d}"));
        }
        if c.more > 0 {
            differ.push(format!("tree {tree}: {} more keys differ", c.more));
        }
        if c.source.rows != c.target.rows {
            differ.push(format!("tree {tree}: {} entries in sled, {} in PostgreSQL", c.source.rows, c.target.rows));
        }
    }
    progress.finish();
    if source_rows != copied.rows {
        differ.push(format!("the sled store holds {source_rows} entries, {} were copied", copied.rows));
    }
    if let Some(db) = db {
        let rows = db.rows().map_err(|e| failed("the database's rows", e))?;
        if rows != copied.rows {
            differ.push(format!("the database holds {rows} entries, {} were copied", copied.rows));
        }
    }

    // The audit log: the same size and root on both engines, and the latest checkpoint's root
    // is the copied log's at its size (what the node checks at its start).
    let audit_size = source.audit_size().map_err(|e| failed("the sled audit log's size", e))?;
    let target_size = target.audit_size().map_err(|e| failed("the audit log's size", e))?;
    let root = |s: &Store, size: u64| ftz_audit::merkle::root(&TreeReader::uncached(s), size);
    let audit_root = root(source, audit_size).map_err(|e| failed("the sled audit log's root", e))?;
    if target_size != audit_size {
        differ.push(format!("the audit log holds {target_size} entries in PostgreSQL, {audit_size} in sled"));
    } else {
        match root(target, audit_size) {
            Ok(r) if r == audit_root => {}
            Ok(r) => differ.push(format!(
                "the audit log's root at size {audit_size} is {} in PostgreSQL, {} in sled",
                hex::encode(r),
                hex::encode(audit_root)
            )),
            Err(e) => {
                differ.push(format!("the audit log's root at size {audit_size} cannot be computed in PostgreSQL: {e}"))
            }
        }
    }
    let latest = target.latest_checkpoint().map_err(|e| failed("the latest checkpoint", e))?;
    let source_latest = source.latest_checkpoint().map_err(|e| failed("the sled store's latest checkpoint", e))?;
    if latest != source_latest {
        differ.push(format!(
            "the latest signed checkpoint is at size {:?} in PostgreSQL, {:?} in sled, or their notes differ",
            latest.as_ref().map(|l| l.0),
            source_latest.as_ref().map(|l| l.0)
        ));
    }
    if let Some((size, text)) = &latest
        && let Err(why) = checkpoint_matches(target, *size, text)
    {
        differ.push(format!("the latest signed checkpoint (size {size}): {why}"));
    }

    // Ids: the next one PostgreSQL hands out is above every id sled did (one is spent here).
    match target.next_id() {
        Ok(next) if next > ids_above => {}
        Ok(next) => differ.push(format!("the id sequence hands out {next}, not above {ids_above} (sled's last)")),
        Err(e) => return Err(failed("the id sequence", e)),
    }

    if differ.is_empty() {
        Ok(Verified { audit_size, audit_root, checkpoint_size: latest.map(|(s, _)| s) })
    } else {
        Err(MigrateError::Mismatch(differ))
    }
}

/// Whether the checkpoint note `text`, kept as the latest at `size`, states `store`'s log root
/// at its size. (Its signature is the sled store's bytes, compared already: checking it needs
/// the node's keys, which the node does at its start.)
fn checkpoint_matches(store: &Store, size: u64, text: &str) -> Result<(), String> {
    let note = Note::parse(text).map_err(|e| format!("not a signed note: {e}"))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| format!("not a checkpoint: {e}"))?;
    if cp.size != size {
        return Err(format!("its text states size {}", cp.size));
    }
    let root = ftz_audit::merkle::root(&TreeReader::uncached(store), size).map_err(|e| e.to_string())?;
    if root != cp.root {
        return Err(format!(
            "it states root {}, the copied log's root at that size is {}",
            hex::encode(cp.root),
            hex::encode(root)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ftz_core::{SigningKey, ZoneId};
    use ftz_devkit::postgres::TempPostgres;
    use ftz_store::AuditBatch;

    use super::*;

    /// A sled store with a real audit log of `n` leaves (one tile) and a checkpoint signed at
    /// its size, and a few other entries.
    fn sled_store(dir: &Path, n: u64) -> Store {
        let s = Store::open(dir, StoreOptions::default()).unwrap();
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf {i}").into_bytes()).collect();
        let tile: Vec<u8> = leaves.iter().flat_map(|l| ftz_audit::merkle::leaf_hash(l)).collect();
        s.audit_append(&AuditBatch { old_size: 0, leaves, tiles: vec![(0, tile)], ..Default::default() }).unwrap();
        let zone = ZoneId::new("shanghai").unwrap();
        let (key, _) = SigningKey::generate().unwrap();
        let (_, note) = crate::audit::checkpoints::sign_checkpoint(&TreeReader::uncached(&s), &zone, &key, n).unwrap();
        s.put_checkpoint(n, &note).unwrap();
        for i in 0..30u8 {
            s.put_pending_intent(&[i; 16], i64::from(i), b"intent").unwrap();
        }
        s.flush().unwrap();
        s
    }

    fn target(pg: &TempPostgres, db: &str) -> PgOptions {
        pg.create_database(db).unwrap();
        let mut o = PgOptions::new(pg.url(db));
        o.timeout = Duration::from_secs(10);
        o
    }

    /// Copied and verified, in batches smaller than a tree; a second migration into the same
    /// database is refused and changes nothing; a locked source and a missing one are refused.
    #[test]
    fn a_sled_store_is_copied_verified_and_never_copied_over_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("data");
        let s = sled_store(&sled_dir, 5);
        let expected_root = ftz_audit::merkle::root(&TreeReader::uncached(&s), 5).unwrap();
        let locked = migrate(&MigrateOptions::new(&sled_dir, PgOptions::new("postgresql://ftz@127.0.0.1:1/x")));
        let e = locked.unwrap_err();
        assert!(matches!(e, MigrateError::Refused(_)) && e.to_string().contains("Stop the zone's node"), "{e}");
        drop(s);

        let pg = TempPostgres::start().unwrap();
        let mut options = MigrateOptions::new(&sled_dir, target(&pg, "shanghai"));
        options.limits = BatchLimits { rows: 4, bytes: 1 << 20 };
        let m = migrate(&options).unwrap();
        assert_eq!((m.audit_size, m.checkpoint_size), (5, Some(5)));
        assert_eq!(m.audit_root, hex::encode(expected_root));
        assert_eq!(m.trees, Store::open(&sled_dir, StoreOptions::default()).unwrap().backup_trees().len());
        assert!(m.rows > 30 && m.bytes > 0, "{m:?}");

        let again = migrate(&options).unwrap_err();
        assert!(matches!(again, MigrateError::Refused(_)), "{again}");
        assert!(again.to_string().contains("already holds a store"), "{again}");
        let copy = Store::open_postgres(options.to.clone()).unwrap();
        assert_eq!(copy.audit_size().unwrap(), 5);
        assert!(copy.next_id().unwrap() > m.ids_above);

        let nowhere = migrate(&MigrateOptions::new(dir.path().join("typo"), options.to.clone())).unwrap_err();
        assert!(nowhere.to_string().contains("holds no sled store"), "{nowhere}");
        assert!(!dir.path().join("typo").exists(), "no store is created where --from points");
    }

    /// A copy changed after it was made (one entry's value, a checkpoint the log does not
    /// match) fails verification, naming each.
    #[test]
    fn a_tampered_copy_fails_verification_with_what_differs() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let source = sled_store(a.path(), 7);
        let pg = TempPostgres::start().unwrap();
        let target = Store::open_postgres(target(&pg, "t")).unwrap();
        let mut copied = Tally::default();
        for tree in source.backup_trees() {
            let t = source.copy_tree_into(&target, &tree, BatchLimits::default(), &mut |_| {}).unwrap();
            copied.rows += t.rows;
            copied.bytes += t.bytes;
        }
        let ids = source.next_id().unwrap();
        let db = PostgresTarget::connect(&target_options(&pg, "t")).unwrap();
        db.ensure_ids_above(ids).unwrap();
        let mut quiet = Progress::new(false);
        let ok = verify(&source, &target, Some(&db), copied, ids, &mut quiet).unwrap();
        assert_eq!((ok.audit_size, ok.checkpoint_size), (7, Some(7)));

        // One entry's value changed; a checkpoint of a shorter log put as the latest.
        target.put_pending_intent(&[3; 16], 3, b"forged").unwrap();
        let other = sled_store(b.path(), 3);
        let (size, note) = other.latest_checkpoint().unwrap().unwrap();
        target.put_checkpoint(size + 4, &note).unwrap();
        let e = verify(&source, &target, Some(&db), copied, ids, &mut quiet).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        let d = e.differences().join("\n");
        assert!(d.contains("tree pending_intents: key 0x03030303030303030303030303030303 has another value"), "{d}");
        assert!(d.contains("the latest signed checkpoint (size 7): its text states size 3"), "{d}");
        assert!(d.contains("tree audit: key"), "the audit tree's changed keys are named: {d}");
        assert!(d.contains("the latest signed checkpoint is at size Some(7) in PostgreSQL"), "{d}");
        assert!(e.to_string().contains("drop the database"), "{e}");
    }

    fn target_options(pg: &TempPostgres, db: &str) -> PgOptions {
        let mut o = PgOptions::new(pg.url(db));
        o.timeout = Duration::from_secs(10);
        o
    }
}
