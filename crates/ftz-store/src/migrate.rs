//! Moving a store from one engine to another: what `ftz-node migrate-store` needs of the store
//! to copy a zone's sled store into PostgreSQL and to prove the copy exact before the zone's
//! node is started on it.
//!
//! - [`Store::copy_tree_into`] copies one tree in key order, a bounded batch at a time
//!   ([`BatchLimits`]), so a store of any size is copied in bounded memory; each batch is one
//!   transaction on PostgreSQL, of one multi-row statement ([`kv::Tree::insert_many`]).
//! - [`Store::compare_tree`] streams a tree of both stores side by side in key order and reports
//!   every key that is missing, extra or different (the first few of them in full), so a copy is
//!   checked against its source key by key and value by value, again in bounded memory.
//! - [`Store::unlisted_trees`] finds sled trees that hold entries but are not among the trees a
//!   store has (`TREES`): a migration would leave them behind, so it refuses instead.
//! - [`PostgresTarget`] is an engine of its own on the target database (`pg`'s pool, one that
//!   neither creates nor checks the schema) for the two things the key-value engine does not
//!   do: seeing whether the database already holds any row (of any tree, even one this build
//!   does not know), and moving the id sequence `ftz_ids` above every id the source store
//!   handed out (ids are unique in a store, and a record or message keyed by an id that the new
//!   engine hands out again would be overwritten).
//!
//! A copy is made with the source store locked by this process (sled's lock: the node is
//! stopped), so it is a snapshot: nothing changes under it, and the comparison afterwards
//! expects equality, not "equal up to what changed meanwhile" (unlike a backup, see `backup`).

use std::fmt;

use crate::{
    PgOptions, Store, StoreError, kv,
    pg::{Params, Pg},
};

/// What was copied or compared: entries, and their bytes (keys plus values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.rows += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
}

/// How much one batch of a copy holds at most: whichever limit is reached first closes it.
/// Bounded in rows so one PostgreSQL transaction stays short (statement and lock timeouts apply
/// to it), and in bytes so a tree of large values does not fill memory either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub rows: usize,
    pub bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { rows: 2000, bytes: 4 * 1024 * 1024 }
    }
}

/// One key in which a tree of two stores differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The source holds the key, the target does not.
    Missing { key: Vec<u8> },
    /// The target holds a key the source does not.
    Extra { key: Vec<u8> },
    /// Both hold the key, with different values.
    Changed { key: Vec<u8>, source_len: usize, target_len: usize },
}

/// A key as an operator can read it: as text when it is printable ASCII, in hex otherwise.
pub fn show_key(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(key))
    } else {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key } => write!(f, "key {} is missing from the target", show_key(key)),
            Self::Extra { key } => write!(f, "key {} is in the target but not in the source", show_key(key)),
            Self::Changed { key, source_len, target_len } => write!(
                f,
                "key {} has another value in the target ({target_len} bytes; the source's has {source_len})",
                show_key(key)
            ),
        }
    }
}

/// What comparing one tree of two stores found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeComparison {
    pub tree: String,
    pub source: Tally,
    pub target: Tally,
    /// The first [`TreeComparison::SHOWN`] differences, in key order.
    pub differences: Vec<Difference>,
    /// How many more differences there are beyond those shown.
    pub more: u64,
}

impl TreeComparison {
    /// Differences kept in full; the rest are only counted (a wholly wrong target would
    /// otherwise fill memory with its keys).
    pub const SHOWN: usize = 10;

    /// Whether both stores hold exactly the same entries in this tree.
    pub fn is_same(&self) -> bool {
        self.differences.is_empty() && self.more == 0 && self.source == self.target
    }

    /// Every difference found, shown and counted.
    pub fn count(&self) -> u64 {
        self.differences.len() as u64 + self.more
    }

    fn note(&mut self, d: Difference) {
        if self.differences.len() < Self::SHOWN {
            self.differences.push(d);
        } else {
            self.more += 1;
        }
    }
}

/// Progress is reported this often (in entries) while a tree is compared.
const PROGRESS_EVERY: u64 = 1000;

/// sled's own default tree: the store never writes it, so anything in it is unknown data.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

type Entry = Option<(kv::Value, kv::Value)>;

fn next_entry(it: &mut kv::Entries) -> Result<Entry, StoreError> {
    it.next().transpose()
}

impl Store {
    /// sled: trees that hold entries but are not among the trees of a store (`TREES`, what
    /// [`Store::backup_trees`] lists), sled's default tree included. A migration copies the
    /// store's trees only, so it refuses a store that has others rather than lose them.
    /// PostgreSQL: always empty (its trees are not listed through the engine;
    /// [`PostgresTarget::contents`] sees every row of the database instead).
    pub fn unlisted_trees(&self) -> Result<Vec<String>, StoreError> {
        let kv::Engine::Sled(db) = &self.db else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for name in db.tree_names() {
            let listed = std::str::from_utf8(&name).is_ok_and(|n| crate::TREES.contains(&n));
            if listed {
                continue;
            }
            let tree = if name.as_ref() == SLED_DEFAULT_TREE { (**db).clone() } else { db.open_tree(&name)? };
            if tree.first()?.is_some() {
                out.push(String::from_utf8_lossy(&name).into_owned());
            }
        }
        Ok(out)
    }

    /// Copies every entry of `tree` in this store into the same tree of `target`, in key order,
    /// a batch of at most `limits` at a time (one statement each on PostgreSQL), and calls
    /// `progress` with the running tally after each batch. Returns what was copied. Writes
    /// over whatever `target` holds at those keys: the caller makes sure it holds nothing.
    pub fn copy_tree_into(
        &self,
        target: &Store,
        tree: &str,
        limits: BatchLimits,
        progress: &mut dyn FnMut(Tally),
    ) -> Result<Tally, StoreError> {
        let from = self.db.open_tree(tree)?;
        let to = target.db.open_tree(tree)?;
        let mut done = Tally::default();
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for kv in from.iter() {
            let (k, v) = kv?;
            done.add(&k, &v);
            bytes += k.len() + v.len();
            batch.push((k.to_vec(), v.to_vec()));
            if batch.len() >= limits.rows.max(1) || bytes >= limits.bytes {
                to.insert_many(std::mem::take(&mut batch))?;
                bytes = 0;
                progress(done);
            }
        }
        if !batch.is_empty() {
            to.insert_many(batch)?;
            progress(done);
        }
        target.db.flush()?;
        Ok(done)
    }

    /// Compares `tree` in this store (the source) with the same tree of `other` (the target),
    /// reading both in key order side by side, so that a tree of any size is compared in
    /// bounded memory. `progress` gets the source's running tally now and then.
    pub fn compare_tree(
        &self,
        other: &Store,
        tree: &str,
        progress: &mut dyn FnMut(Tally),
    ) -> Result<TreeComparison, StoreError> {
        let mut a = self.db.open_tree(tree)?.iter();
        let mut b = other.db.open_tree(tree)?.iter();
        let mut out = TreeComparison {
            tree: tree.to_string(),
            source: Tally::default(),
            target: Tally::default(),
            differences: Vec::new(),
            more: 0,
        };
        let (mut x, mut y) = (next_entry(&mut a)?, next_entry(&mut b)?);
        loop {
            let (advance_a, advance_b) = match (&x, &y) {
                (None, None) => break,
                (Some((k, _)), None) => {
                    out.note(Difference::Missing { key: k.to_vec() });
                    (true, false)
                }
                (None, Some((k, _))) => {
                    out.note(Difference::Extra { key: k.to_vec() });
                    (false, true)
                }
                (Some((ka, va)), Some((kb, vb))) => match ka.as_ref().cmp(kb.as_ref()) {
                    std::cmp::Ordering::Less => {
                        out.note(Difference::Missing { key: ka.to_vec() });
                        (true, false)
                    }
                    std::cmp::Ordering::Greater => {
                        out.note(Difference::Extra { key: kb.to_vec() });
                        (false, true)
                    }
                    std::cmp::Ordering::Equal => {
                        if va.as_ref() != vb.as_ref() {
                            out.note(Difference::Changed {
                                key: ka.to_vec(),
                                source_len: va.len(),
                                target_len: vb.len(),
                            });
                        }
                        (true, true)
                    }
                },
            };
            if advance_a {
                if let Some((k, v)) = &x {
                    out.source.add(k, v);
                }
                x = next_entry(&mut a)?;
                if out.source.rows.is_multiple_of(PROGRESS_EVERY) {
                    progress(out.source);
                }
            }
            if advance_b {
                if let Some((k, v)) = &y {
                    out.target.add(k, v);
                }
                y = next_entry(&mut b)?;
            }
        }
        progress(out.source);
        Ok(out)
    }
}

/// What a migration's target database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetContents {
    /// No store's table: a new database.
    NoSchema,
    /// The store's tables, with no entry but the store's format version (what a node's first
    /// start writes before anything else, or an earlier attempt that was stopped at once).
    Empty,
    /// Entries: a store is there. `rows` counts them up to [`TargetContents::COUNTED`].
    Holds { rows: u64, first_tree: String },
}

impl TargetContents {
    /// Rows counted at most when telling the operator what a database holds (counting all of
    /// a large one would scan it just to refuse it).
    pub const COUNTED: u64 = 100_000;

    /// Whether a store may be copied into this database.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::NoSchema | Self::Empty)
    }
}

/// How long a scan of [`PostgresTarget`] may run: a full count of the rows of a store
/// of tens of millions of entries.
const SCAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// A migration's target database, for the few statements a migration needs that the key-value
/// engine has no call for (see the module's comment): an engine of its own, next to the store's,
/// that neither creates nor checks the schema (the database may hold none yet). TLS as the
/// engine speaks it (`PgOptions::tls_ca`).
pub struct PostgresTarget {
    pg: Pg,
}

impl PostgresTarget {
    /// Connects to the database `options` names (its URL, CA, timeout and pool; not `create`).
    pub fn connect(options: &PgOptions) -> Result<Self, StoreError> {
        Ok(Self { pg: Pg::connect_only(options.clone(), "ftz-node migrate-store")? })
    }

    /// A statement that scans (counting a large store's rows): longer than a node's call may
    /// take, but still bounded, so a database that stops answering fails the migration.
    fn scan(&self, sql: &str, params: Params) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.pg.query_with_timeout(sql, params, self.pg.timeout().max(SCAN_TIMEOUT))
    }

    /// What the database holds: no store's table, no entry (but the format version), or
    /// entries of some store. Reads only.
    pub fn contents(&self) -> Result<TargetContents, StoreError> {
        let rows = self.pg.query("SELECT to_regclass('ftz_kv') IS NOT NULL", vec![])?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(TargetContents::NoSchema);
        }
        let first = self.pg.query("SELECT tree, key FROM ftz_kv ORDER BY tree, key LIMIT 2", vec![])?;
        let entries: Vec<(String, Vec<u8>)> = first.iter().map(|r| (r.get(0), r.get(1))).collect();
        match entries.as_slice() {
            [] => return Ok(TargetContents::Empty),
            [(tree, key)] if tree == "meta" && key.as_slice() == crate::FORMAT_KEY => return Ok(TargetContents::Empty),
            _ => {}
        }
        let rows = self.scan(
            "SELECT count(*) FROM (SELECT 1 FROM ftz_kv LIMIT $1) AS t",
            vec![Box::new(TargetContents::COUNTED as i64)],
        )?;
        let rows = rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64;
        Ok(TargetContents::Holds { rows, first_tree: entries[0].0.clone() })
    }

    /// Every entry of every tree in the database (a full count: for checking a copy).
    pub fn rows(&self) -> Result<u64, StoreError> {
        let rows = self.scan("SELECT count(*) FROM ftz_kv", vec![])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    /// Moves the store's id sequence so that every id it hands out from now on is above `n`
    /// (never down: a sequence already beyond stays). The store must exist (its schema).
    pub fn ensure_ids_above(&self, n: u64) -> Result<(), StoreError> {
        let n = i64::try_from(n.max(1))
            .map_err(|_| StoreError::Postgres(format!("id {n} is beyond what a PostgreSQL sequence holds")))?;
        self.pg.query(
            "SELECT setval('ftz_ids', GREATEST($1::bigint, last_value), true) FROM ftz_ids",
            vec![Box::new(n)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreOptions, testing::Place};

    /// A sled store with entries in several trees, more of them than one batch holds.
    fn source(dir: &std::path::Path) -> Store {
        let s = Store::open(dir, StoreOptions::default()).unwrap();
        for i in 0u32..50 {
            s.put_pending_intent(&[i as u8; 16], i64::from(i), &vec![7; i as usize]).unwrap();
        }
        s.put_checkpoint(3, "three\n").unwrap();
        let raw = s.db.open_tree("records").unwrap();
        raw.insert(b"SH-0001", b"a record").unwrap();
        raw.insert([0u8, 255, 1], b"binary key").unwrap();
        s.flush().unwrap();
        s
    }

    fn copy_all(from: &Store, to: &Store) -> Tally {
        let limits = BatchLimits { rows: 7, bytes: 300 };
        let mut total = Tally::default();
        for tree in from.backup_trees() {
            let mut batches = 0;
            let t = from.copy_tree_into(to, &tree, limits, &mut |_| batches += 1).unwrap();
            if tree == "pending_intents" {
                assert!(batches > 7, "{batches} batches for 50 entries of up to 7");
            }
            total.rows += t.rows;
            total.bytes += t.bytes;
        }
        total
    }

    fn compare_all(from: &Store, to: &Store) -> Vec<TreeComparison> {
        from.backup_trees().iter().map(|t| from.compare_tree(to, t, &mut |_| {}).unwrap()).collect()
    }

    /// A copy is exact, on either engine; and a target changed afterwards, one key's value, one
    /// key removed, one added, is caught with each of those keys.
    #[test]
    fn a_copy_compares_equal_and_every_tampered_key_is_found() {
        for place in crate::testing::places() {
            let dir = tempfile::tempdir().unwrap();
            let from = source(dir.path());
            let to = place.open();
            let copied = copy_all(&from, &to);
            assert!(copied.rows > 50, "{copied:?}");
            let same = compare_all(&from, &to);
            assert!(same.iter().all(TreeComparison::is_same), "{same:?}");
            let rows: u64 = same.iter().map(|c| c.target.rows).sum();
            assert_eq!(rows, copied.rows);
            assert_eq!(to.latest_checkpoint().unwrap(), Some((3, "three\n".into())));

            let records = to.db.open_tree("records").unwrap();
            records.insert(b"SH-0001", b"another record").unwrap();
            records.remove([0u8, 255, 1]).unwrap();
            to.db.open_tree("pending_intents").unwrap().insert([200u8; 16], b"extra").unwrap();
            let found = from.compare_tree(&to, "records", &mut |_| {}).unwrap();
            assert!(!found.is_same());
            assert_eq!(
                found.differences,
                vec![
                    Difference::Missing { key: vec![0, 255, 1] },
                    Difference::Changed { key: b"SH-0001".to_vec(), source_len: 8, target_len: 14 },
                ]
            );
            assert_eq!(found.differences[0].to_string(), "key 0x00ff01 is missing from the target");
            assert!(found.differences[1].to_string().starts_with("key \"SH-0001\" has another value"));
            let extra = from.compare_tree(&to, "pending_intents", &mut |_| {}).unwrap();
            assert_eq!(extra.differences, vec![Difference::Extra { key: vec![200; 16] }]);
            assert_eq!((extra.source.rows, extra.target.rows), (50, 51));
        }
    }

    /// A tree of more entries than one batch of the default limits holds, copied whole into
    /// either engine (the time it took is printed: `--nocapture`).
    #[test]
    fn a_tree_of_several_default_batches_is_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let records = from.db.open_tree("records").unwrap();
        let n = 5000u32;
        for i in 0..n {
            records.insert(format!("SH-{i:08}"), vec![i as u8; 100]).unwrap();
        }
        for place in crate::testing::places() {
            let engine = if matches!(place, Place::Sled(_)) { "sled" } else { "PostgreSQL" };
            let to = place.open();
            let started = std::time::Instant::now();
            let mut batches = 0;
            let copied = from.copy_tree_into(&to, "records", BatchLimits::default(), &mut |_| batches += 1).unwrap();
            let elapsed = started.elapsed();
            println!(
                "copied {} rows ({} bytes) into {engine} in {batches} batches: {elapsed:?} ({:.0} rows/s)",
                copied.rows,
                copied.bytes,
                copied.rows as f64 / elapsed.as_secs_f64()
            );
            assert_eq!((copied.rows, batches), (u64::from(n), 3));
            assert!(from.compare_tree(&to, "records", &mut |_| {}).unwrap().is_same());
        }
    }

    /// A target that lacks a whole tree: the first few keys are shown, the rest counted.
    #[test]
    fn many_differences_are_counted_beyond_those_shown() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = source(a.path());
        let to = Place::Sled(b).open();
        let c = from.compare_tree(&to, "pending_intents", &mut |_| {}).unwrap();
        assert_eq!(c.differences.len(), TreeComparison::SHOWN);
        assert_eq!(c.count(), 50);
        assert_eq!((c.source.rows, c.target.rows), (50, 0));
    }

    #[test]
    fn a_sled_tree_the_store_does_not_know_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = source(dir.path());
        assert_eq!(s.unlisted_trees().unwrap(), Vec::<String>::new());
        let kv::Engine::Sled(db) = &s.db else { unreachable!("a sled store") };
        db.open_tree("from_the_future").unwrap();
        assert_eq!(s.unlisted_trees().unwrap(), Vec::<String>::new(), "an empty tree loses nothing");
        db.open_tree("from_the_future").unwrap().insert(b"k", b"v").unwrap();
        db.insert(b"k", b"v").unwrap();
        assert_eq!(s.unlisted_trees().unwrap(), vec!["__sled__default".to_string(), "from_the_future".to_string()]);
    }

    /// The target's contents as a migration sees them, and the id sequence moved above the
    /// source's ids (never down).
    #[test]
    fn a_postgres_target_says_what_it_holds_and_its_ids_move_up_only() {
        let pg = ftz_pgtest::TempPostgres::start().unwrap();
        pg.create_database("target").unwrap();
        let mut options = PgOptions::new(pg.url("target"));
        options.timeout = std::time::Duration::from_secs(10);
        let target = PostgresTarget::connect(&options).unwrap();
        assert_eq!(target.contents().unwrap(), TargetContents::NoSchema);
        let store = Store::open_postgres(options.clone()).unwrap();
        assert_eq!(target.contents().unwrap(), TargetContents::Empty, "only the format version");
        assert!(target.contents().unwrap().is_empty());

        target.ensure_ids_above(5_000_000).unwrap();
        assert!(store.next_id().unwrap() > 5_000_000);
        target.ensure_ids_above(10).unwrap();
        let next = store.next_id().unwrap();
        assert!(next > 5_000_001, "never down: {next}");

        store.put_pending_intent(&[1; 16], 1, b"x").unwrap();
        let holds = target.contents().unwrap();
        assert_eq!(holds, TargetContents::Holds { rows: 2, first_tree: "meta".into() });
        assert!(!holds.is_empty());
        assert_eq!(target.rows().unwrap(), 2);

        let mut elsewhere = options.clone();
        elsewhere.url = pg.url("no_such_database");
        let e = PostgresTarget::connect(&elsewhere).err().expect("no such database");
        assert!(e.to_string().contains("no_such_database"), "{e}");
    }
}
