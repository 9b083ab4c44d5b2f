//! The two engines under the typed store, behind one shape: named trees, each an ordered map of
//! byte keys to byte values, as sled has them. sled is the embedded default; PostgreSQL
//! (`pg`) is for a zone that outgrows one machine. The typed modules of this crate are written
//! against [`Tree`] and [`Engine`] only, so they hold whichever engine the node was configured
//! with, and nothing above this crate knows which.
//!
//! Semantics both engines keep: a key's value is replaced whole; [`Tree::compare_and_swap`]
//! is atomic; ranges are in byte order of the keys; [`Engine::transaction`] over several trees
//! is atomic and isolated (sled's transaction; on PostgreSQL one SERIALIZABLE transaction, run
//! again on a conflict). What differs: on sled a write is durable after a flush, on PostgreSQL
//! when it returns (its commit), so there [`Engine::flush`] has nothing to do.

use std::ops::{Bound, Deref};

use crate::{
    StoreError,
    pg::{Pg, PgRange, PgTree, PgTx},
};

/// Attempts of a fetch-and-update on PostgreSQL before it gives up (a key changed by others
/// that often is a bug, not load).
const UPDATE_ATTEMPTS: usize = 64;

/// A value read from a tree: sled's own buffer (no copy), or the bytes PostgreSQL sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Sled(sled::IVec),
    Owned(Vec<u8>),
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Sled(v) => v,
            Self::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// A storage engine: where the trees are.
#[derive(Clone, Debug)]
pub enum Engine {
    Sled(sled::Db),
    Postgres(Pg),
}

/// One named tree of an engine.
#[derive(Clone, Debug)]
pub enum Tree {
    Sled(sled::Tree),
    Postgres(PgTree),
}

/// Entries of a range, in order.
pub type Entries = Box<dyn Iterator<Item = Result<(Value, Value), StoreError>> + Send>;

impl Engine {
    pub fn open_tree(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(match self {
            Self::Sled(db) => Tree::Sled(db.open_tree(name)?),
            Self::Postgres(pg) => Tree::Postgres(pg.tree(name)),
        })
    }

    /// Makes every write so far durable (sled); nothing to do on PostgreSQL, whose writes are
    /// committed when they return.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(db) => db.flush().map(|_| ()).map_err(|e| StoreError::Flush(e.to_string())),
            Self::Postgres(_) => Ok(()),
        }
    }

    /// The PostgreSQL engine, for what only a shared database needs (locks several replicas
    /// take turns on).
    pub(crate) fn as_postgres(&self) -> Option<&Pg> {
        match self {
            Self::Postgres(pg) => Some(pg),
            Self::Sled(_) => None,
        }
    }

    /// Whether writes need a flush to be durable (sled); PostgreSQL's are when they return.
    pub fn needs_flush(&self) -> bool {
        matches!(self, Self::Sled(_))
    }

    /// A number never handed out before in this store, increasing.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sled(db) => Ok(db.generate_id()?),
            Self::Postgres(pg) => pg.generate_id(),
        }
    }

    /// The store's size on disk in bytes (PostgreSQL: the database's).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sled(db) => Ok(db.size_on_disk()?),
            Self::Postgres(pg) => pg.size_on_disk(),
        }
    }

    /// Runs `f` atomically over `trees` (all of this engine), again if the engine asks
    /// (a conflict): `f` must be safe to run more than once and act only through its view.
    pub fn transaction<T>(
        &self,
        trees: &[&Tree],
        f: impl Fn(&mut TxView<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Self::Sled(_) => {
                let sled_trees: Vec<&sled::Tree> = trees
                    .iter()
                    .map(|t| match t {
                        Tree::Sled(t) => Ok(t),
                        Tree::Postgres(_) => {
                            Err(StoreError::Postgres("a PostgreSQL tree in a sled transaction".into()))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                use sled::{Transactional, transaction::ConflictableTransactionError as Conflict};
                let res = sled_trees.as_slice().transaction(|view| {
                    let mut v = TxView::Sled(view.as_slice(), None);
                    let out = f(&mut v);
                    if let TxView::Sled(_, Some(e)) = v {
                        return Err(Conflict::from(e));
                    }
                    out.map_err(Conflict::Abort)
                });
                match res {
                    Ok(v) => Ok(v),
                    Err(sled::transaction::TransactionError::Abort(e)) => Err(e),
                    Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
                }
            }
            Self::Postgres(pg) => {
                let names: Vec<String> = trees
                    .iter()
                    .map(|t| match t {
                        Tree::Postgres(t) => Ok(t.name().to_string()),
                        Tree::Sled(_) => Err(StoreError::Postgres("a sled tree in a PostgreSQL transaction".into())),
                    })
                    .collect::<Result<_, _>>()?;
                pg.transaction(|tx| f(&mut TxView::Postgres(tx, &names)))
            }
        }
    }
}

/// What a transaction sees of its trees, by their index in the list it was given.
pub enum TxView<'a, 'b> {
    /// sled's view, and the first storage error met (sled wants it back as such).
    Sled(&'a [sled::transaction::TransactionalTree], Option<sled::transaction::UnabortableTransactionError>),
    Postgres(&'a mut PgTx<'b>, &'a [String]),
}

impl TxView<'_, '_> {
    fn sled_err(
        slot: &mut Option<sled::transaction::UnabortableTransactionError>,
        e: sled::transaction::UnabortableTransactionError,
    ) -> StoreError {
        let msg = StoreError::Flush(format!("transaction: {e}"));
        slot.get_or_insert(e);
        msg
    }

    pub fn get(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, StoreError> {
        match self {
            Self::Sled(t, slot) => t[tree].get(key).map(|v| v.map(Value::Sled)).map_err(|e| Self::sled_err(slot, e)),
            Self::Postgres(tx, names) => Ok(tx.get(&names[tree], key)?.map(Value::Owned)),
        }
    }

    pub fn insert(&mut self, tree: usize, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match self {
            Self::Sled(t, slot) => t[tree].insert(key, value).map(|_| ()).map_err(|e| Self::sled_err(slot, e)),
            Self::Postgres(tx, names) => tx.insert(&names[tree], key, value),
        }
    }

    pub fn remove(&mut self, tree: usize, key: &[u8]) -> Result<Option<Value>, StoreError> {
        match self {
            Self::Sled(t, slot) => t[tree].remove(key).map(|v| v.map(Value::Sled)).map_err(|e| Self::sled_err(slot, e)),
            Self::Postgres(tx, names) => Ok(tx.remove(&names[tree], key)?.map(Value::Owned)),
        }
    }
}

/// A compare-and-swap that found something else: what the key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasFailure {
    pub current: Option<Value>,
}

/// Writes and removals for [`Tree::apply_batch`], in order.
#[derive(Debug, Default)]
pub struct Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0.push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }
}

/// Only the keys, or only the values, of entries.
pub trait EntriesExt {
    fn keys(self) -> Box<dyn Iterator<Item = Result<Value, StoreError>> + Send>;
    fn values(self) -> Box<dyn Iterator<Item = Result<Value, StoreError>> + Send>;
}

impl EntriesExt for Entries {
    fn keys(self) -> Box<dyn Iterator<Item = Result<Value, StoreError>> + Send> {
        Box::new(self.map(|kv| kv.map(|(k, _)| k)))
    }

    fn values(self) -> Box<dyn Iterator<Item = Result<Value, StoreError>> + Send> {
        Box::new(self.map(|kv| kv.map(|(_, v)| v)))
    }
}

fn as_bytes<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn owned_range(r: PgRange) -> Entries {
    Box::new(r.map(|kv| kv.map(|(k, v)| (Value::Owned(k), Value::Owned(v)))))
}

fn sled_entries(it: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send + 'static) -> Entries {
    Box::new(it.map(|kv| kv.map(|(k, v)| (Value::Sled(k), Value::Sled(v))).map_err(StoreError::from)))
}

fn to_owned_bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The least key above every key that starts with `prefix` (None: no such key, all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, StoreError> {
        match self {
            Self::Sled(t) => Ok(t.get(key)?.map(Value::Sled)),
            Self::Postgres(t) => Ok(t.get(key.as_ref())?.map(Value::Owned)),
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` to `value`; what it held before, if anything.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<Option<Value>, StoreError> {
        match self {
            Self::Sled(t) => Ok(t.insert(key.as_ref(), value.as_ref())?.map(Value::Sled)),
            Self::Postgres(t) => Ok(t.insert(key.as_ref(), value.as_ref())?.map(Value::Owned)),
        }
    }

    /// Replaces `key`'s value by `f(current)` (`None`: removes it), atomically (again if it
    /// changed meanwhile); returns the value it replaced.
    pub fn fetch_and_update(
        &self,
        key: impl AsRef<[u8]>,
        mut f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Value>, StoreError> {
        let key = key.as_ref();
        match self {
            Self::Sled(t) => Ok(t.fetch_and_update(key, &mut f)?.map(Value::Sled)),
            Self::Postgres(_) => {
                for _ in 0..UPDATE_ATTEMPTS {
                    let current = self.get(key)?;
                    let new = f(current.as_deref());
                    if self.compare_and_swap(key, current.as_deref(), new.as_deref())?.is_ok() {
                        return Ok(current);
                    }
                }
                Err(StoreError::Postgres(format!(
                    "an update kept racing with concurrent changes ({UPDATE_ATTEMPTS} attempts)"
                )))
            }
        }
    }

    /// Removes `key`; its value, if it had one.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, StoreError> {
        match self {
            Self::Sled(t) => Ok(t.remove(key)?.map(Value::Sled)),
            Self::Postgres(t) => Ok(t.remove(key.as_ref())?.map(Value::Owned)),
        }
    }

    /// Sets `key` to `new` (`None`: removes it) if it holds `old` (`None`: absent); otherwise
    /// changes nothing and returns what it holds.
    pub fn compare_and_swap<O: AsRef<[u8]>, N: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<O>,
        new: Option<N>,
    ) -> Result<Result<(), CasFailure>, StoreError> {
        let old = old.as_ref().map(AsRef::as_ref);
        let new = new.as_ref().map(AsRef::as_ref);
        match self {
            Self::Sled(t) => Ok(t
                .compare_and_swap(key, old, new)?
                .map_err(|cas| CasFailure { current: cas.current.map(Value::Sled) })),
            Self::Postgres(t) => {
                Ok(t.compare_and_swap(key.as_ref(), old, new)?.map_err(|c| CasFailure { current: c.map(Value::Owned) }))
            }
        }
    }

    /// The values of `keys` that the tree holds (one round trip on PostgreSQL): (key, value),
    /// in no particular order.
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Value)>, StoreError> {
        match self {
            Self::Sled(t) => {
                let mut out = Vec::new();
                for k in keys {
                    if let Some(v) = t.get(k)? {
                        out.push((k.clone(), Value::Sled(v)));
                    }
                }
                Ok(out)
            }
            Self::Postgres(t) => {
                Ok(t.get_many(keys.to_vec())?.into_iter().map(|(k, v)| (k, Value::Owned(v))).collect())
            }
        }
    }

    /// The PostgreSQL tree, when the engine is PostgreSQL.
    pub(crate) fn as_postgres(&self) -> Option<&PgTree> {
        match self {
            Self::Postgres(t) => Some(t),
            Self::Sled(_) => None,
        }
    }

    /// Entries with keys in `r`, in key order.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, r: R) -> Entries {
        self.range_bounds(as_bytes(r.start_bound()), as_bytes(r.end_bound()), false)
    }

    /// Entries with keys in `r`, from the last.
    pub fn range_rev<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, r: R) -> Entries {
        self.range_bounds(as_bytes(r.start_bound()), as_bytes(r.end_bound()), true)
    }

    /// Entries with keys between the bounds, in key order, or from the last when `rev`.
    pub fn range_bounds(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool) -> Entries {
        match self {
            Self::Sled(t) => {
                let r = t.range::<Vec<u8>, _>((to_owned_bound(lo), to_owned_bound(hi)));
                if rev { sled_entries(r.rev()) } else { sled_entries(r) }
            }
            Self::Postgres(t) => owned_range(t.range(to_owned_bound(lo), to_owned_bound(hi), rev)),
        }
    }

    /// Entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Entries {
        let prefix = prefix.as_ref();
        match prefix_end(prefix) {
            Some(end) => self.range_bounds(Bound::Included(prefix), Bound::Excluded(&end), false),
            None => self.range_bounds(Bound::Included(prefix), Bound::Unbounded, false),
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Entries {
        self.range_bounds(Bound::Unbounded, Bound::Unbounded, false)
    }

    /// The entry with the least key.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn first(&self) -> Result<Option<(Value, Value)>, StoreError> {
        self.iter().next().transpose()
    }

    /// Entries in the tree (sled counts by scanning; PostgreSQL by `count(*)`).
    pub fn len(&self) -> Result<usize, StoreError> {
        match self {
            Self::Sled(t) => Ok(t.len()),
            Self::Postgres(t) => t.len(),
        }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.first()?.is_none())
    }

    /// Sets every key of `pairs` (the last value given for a key kept), all or none: sled's
    /// batch; on PostgreSQL one transaction of one multi-row statement, not a statement a key
    /// (what copying a store in batches wants).
    pub fn insert_many(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        match self {
            Self::Sled(t) => {
                let mut batch = sled::Batch::default();
                for (k, v) in pairs {
                    batch.insert(k, v);
                }
                Ok(t.apply_batch(batch)?)
            }
            Self::Postgres(t) => {
                if pairs.is_empty() {
                    return Ok(());
                }
                // Cloned for each attempt: a transaction the database aborts is run again.
                t.pg().transaction(|tx| tx.insert_many(t.name(), pairs.clone()))
            }
        }
    }

    /// A batch's writes and removals applied together: all or none.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        let writes = batch.0;
        match self {
            Self::Sled(t) => {
                let mut batch = sled::Batch::default();
                for (k, v) in writes {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                Ok(t.apply_batch(batch)?)
            }
            Self::Postgres(t) => {
                let name = t.name().to_string();
                t.pg().transaction(|tx| {
                    for (k, v) in &writes {
                        match v {
                            Some(v) => tx.insert(&name, k, v)?,
                            None => {
                                tx.remove(&name, k)?;
                            }
                        }
                    }
                    Ok(())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pg::PgOptions;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    fn keys(e: Entries) -> Vec<Vec<u8>> {
        e.map(|kv| kv.unwrap().0.to_vec()).collect()
    }

    /// What both engines must do alike: the typed store relies on each of these.
    fn conformance(engine: &Engine) {
        let t = engine.open_tree("t").unwrap();
        let other = engine.open_tree("other").unwrap();
        assert_eq!(t.get(b"a").unwrap(), None);
        t.insert(b"a", b"1").unwrap();
        t.insert(b"a", b"2").unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(other.get(b"a").unwrap(), None, "trees are apart");
        assert!(t.contains_key(b"a").unwrap());
        assert_eq!(t.remove(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(t.remove(b"a").unwrap(), None);

        // Compare-and-swap, every form.
        assert_eq!(t.compare_and_swap(b"k", None::<&[u8]>, Some(b"v1")).unwrap(), Ok(()));
        let failed = t.compare_and_swap(b"k", None::<&[u8]>, Some(b"v2")).unwrap().unwrap_err();
        assert_eq!(failed.current.as_deref(), Some(&b"v1"[..]));
        assert_eq!(t.compare_and_swap(b"k", Some(b"v1"), Some(b"v2")).unwrap(), Ok(()));
        let failed = t.compare_and_swap(b"k", Some(b"v1"), Some(b"v3")).unwrap().unwrap_err();
        assert_eq!(failed.current.as_deref(), Some(&b"v2"[..]));
        assert_eq!(t.compare_and_swap(b"k", Some(b"v2"), None::<&[u8]>).unwrap(), Ok(()));
        assert_eq!(t.get(b"k").unwrap(), None);
        assert_eq!(t.compare_and_swap(b"k", Some(b"v2"), None::<&[u8]>).unwrap(), Err(CasFailure { current: None }));
        assert_eq!(t.compare_and_swap(b"k", None::<&[u8]>, None::<&[u8]>).unwrap(), Ok(()));
        // What insert, update and remove replaced.
        assert_eq!(t.insert(b"u", b"1").unwrap(), None);
        assert_eq!(t.insert(b"u", b"2").unwrap().as_deref(), Some(&b"1"[..]));
        let was = t.fetch_and_update(b"u", |old| old.map(|o| [o, b"3"].concat())).unwrap();
        assert_eq!((was.as_deref(), t.get(b"u").unwrap().as_deref()), (Some(&b"2"[..]), Some(&b"23"[..])));
        t.fetch_and_update(b"u", |_| None).unwrap();
        assert_eq!(t.get(b"u").unwrap(), None);

        // Byte order, bounds, reverse, prefixes, and more entries than one page.
        for i in 0u32..600 {
            t.insert([b"e".as_slice(), &i.to_be_bytes()].concat(), i.to_be_bytes()).unwrap();
        }
        t.insert(b"d\xff", b"x").unwrap();
        t.insert(b"f", b"y").unwrap();
        t.insert(b"e", b"z").unwrap();
        let e = |i: u32| [b"e".as_slice(), &i.to_be_bytes()].concat();
        let all = keys(t.iter());
        assert_eq!(all.len(), 603);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "in byte order");
        assert_eq!(all[0], b"d\xff");
        assert_eq!(all[1], b"e", "a key before the longer keys it prefixes");
        let prefixed = keys(t.scan_prefix(b"e"));
        assert_eq!(prefixed.len(), 601);
        assert_eq!(
            keys(t.range_bounds(Bound::Included(&e(10)), Bound::Excluded(&e(20)), false)),
            (10..20).map(e).collect::<Vec<_>>()
        );
        assert_eq!(
            keys(t.range_bounds(Bound::Excluded(&e(10)), Bound::Included(&e(20)), false)),
            (11..=20).map(e).collect::<Vec<_>>()
        );
        let back = keys(t.range_bounds(Bound::Included(&e(0)), Bound::Excluded(&e(600)), true));
        assert_eq!(back, (0..600).rev().map(e).collect::<Vec<_>>(), "reversed, across pages");
        assert_eq!(keys(t.range_bounds(Bound::Included(&e(590)), Bound::Unbounded, false)).len(), 11);
        assert_eq!(t.first().unwrap().unwrap().0.as_ref(), b"d\xff");
        assert_eq!(t.len().unwrap(), 603);
        assert!(!t.is_empty().unwrap());
        assert!(engine.open_tree("empty").unwrap().is_empty().unwrap());

        // A transaction over two trees: all of it, or (aborted) none of it.
        let (a, b) = (engine.open_tree("a").unwrap(), engine.open_tree("b").unwrap());
        engine
            .transaction(&[&a, &b], |tx| {
                tx.insert(0, b"x", b"1")?;
                tx.insert(1, b"x", b"2")?;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            (a.get(b"x").unwrap().as_deref(), b.get(b"x").unwrap().as_deref()),
            (Some(&b"1"[..]), Some(&b"2"[..]))
        );
        let aborted = engine.transaction(&[&a, &b], |tx| {
            tx.insert(0, b"y", b"1")?;
            assert_eq!(tx.get(0, b"y")?.as_deref(), Some(&b"1"[..]), "a transaction reads its own writes");
            tx.remove(1, b"x")?;
            Err::<(), _>(StoreError::Corrupt { what: "test", detail: "abort".into() })
        });
        assert!(matches!(aborted, Err(StoreError::Corrupt { .. })), "{aborted:?}");
        assert_eq!(a.get(b"y").unwrap(), None, "nothing of an aborted transaction is written");
        assert!(b.get(b"x").unwrap().is_some());
    }

    /// Concurrent read-modify-write transactions lose no update.
    fn no_lost_updates(engine: &Engine) {
        let c = engine.open_tree("counter").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (engine, c) = (engine.clone(), c.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        engine
                            .transaction(&[&c], |tx| {
                                let n = tx
                                    .get(0, b"n")?
                                    .map(|v| u64::from_be_bytes(v[..8].try_into().unwrap()))
                                    .unwrap_or(0);
                                tx.insert(0, b"n", &(n + 1).to_be_bytes())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(b"n").unwrap().as_deref(), Some(&100u64.to_be_bytes()[..]));
    }

    /// [`Tree::insert_many`] on both engines: every pair set, over what a key held and beside
    /// what it leaves alone, the last of a key given twice kept, in this tree only; nothing
    /// given, nothing changed.
    #[test]
    fn insert_many_sets_every_pair_on_both_engines() {
        for place in crate::testing::places() {
            let store = place.open();
            let (t, other) = (store.db.open_tree("t").unwrap(), store.db.open_tree("other").unwrap());
            t.insert(b"b", b"old").unwrap();
            t.insert(b"z", b"kept").unwrap();
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> =
                (0u32..3000).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 40])).collect();
            pairs.push((b"b".to_vec(), b"new".to_vec()));
            pairs.push((b"twice".to_vec(), b"first".to_vec()));
            pairs.push((b"twice".to_vec(), b"last".to_vec()));
            pairs.push((vec![0xff, 0], Vec::new()));
            t.insert_many(pairs).unwrap();
            assert_eq!(t.len().unwrap(), 3000 + 4);
            assert_eq!(t.get(b"b").unwrap().as_deref(), Some(&b"new"[..]));
            assert_eq!(t.get(b"z").unwrap().as_deref(), Some(&b"kept"[..]));
            assert_eq!(t.get(b"twice").unwrap().as_deref(), Some(&b"last"[..]));
            assert_eq!(t.get([0xff, 0]).unwrap().as_deref(), Some(&b""[..]), "an empty value is a value");
            assert_eq!(t.get(2999u32.to_be_bytes()).unwrap().as_deref(), Some(&[2999u32 as u8; 40][..]));
            let first: Vec<Vec<u8>> = keys(t.iter()).into_iter().take(3).collect();
            assert_eq!(first, (0u32..3).map(|i| i.to_be_bytes().to_vec()).collect::<Vec<_>>(), "in key order");
            assert!(other.is_empty().unwrap(), "trees are apart");
            t.insert_many(Vec::new()).unwrap();
            assert_eq!(t.len().unwrap(), 3004);
        }
    }

    #[test]
    fn sled_keeps_the_engine_contract() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::Sled(sled::Config::new().path(dir.path()).open().unwrap());
        conformance(&engine);
        no_lost_updates(&engine);
    }

    fn postgres(cluster: &ftz_pgtest::TempPostgres, db: &str) -> PgOptions {
        cluster.create_database(db).unwrap();
        let mut o = PgOptions::new(cluster.url(db));
        o.timeout = std::time::Duration::from_secs(5);
        o
    }

    #[test]
    fn postgres_keeps_the_engine_contract() {
        let cluster = ftz_pgtest::TempPostgres::start().unwrap();
        let engine = Engine::Postgres(Pg::open(postgres(&cluster, "contract")).unwrap());
        conformance(&engine);
        no_lost_updates(&engine);
    }

    /// Replicas starting at once all find (or create) one schema; a database that goes away
    /// makes calls fail, not hang, and the engine reconnects once it is back.
    #[test]
    fn postgres_replicas_start_together_and_survive_a_database_restart() {
        let cluster = ftz_pgtest::TempPostgres::start().unwrap();
        let options = postgres(&cluster, "replicas");
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let o = options.clone();
                std::thread::spawn(move || Pg::open(o))
            })
            .collect();
        let engines: Vec<Pg> = opened.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        let trees: Vec<Tree> = engines.iter().map(|e| Tree::Postgres(e.tree("shared"))).collect();
        trees[0].insert(b"k", b"v").unwrap();
        assert_eq!(trees[3].get(b"k").unwrap().as_deref(), Some(&b"v"[..]), "one database behind every replica");

        cluster.stop().unwrap();
        let started = std::time::Instant::now();
        let e = trees[1].get(b"k").unwrap_err();
        assert!(matches!(e, StoreError::Postgres(_)), "{e:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "a call waited {:?}", started.elapsed());
        cluster.start_server().unwrap();
        let back = Arc::new(trees[1].clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let value = loop {
            match back.get(b"k") {
                Ok(v) => break v,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("the engine did not reconnect: {e}"),
            }
        };
        assert_eq!(value.as_deref(), Some(&b"v"[..]), "nothing lost across the restart");
    }
}
