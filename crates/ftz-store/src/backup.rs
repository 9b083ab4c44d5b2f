//! Export of the whole store at an audit-log cut, for an online backup, and import into an
//! empty store, for a restore. The file format is the node's (ftz-node's `backup`); this module
//! only says which (tree, key, value) triples make up a consistent copy.
//!
//! sled has no snapshot across trees (nor within one: an iteration sees each key as it is when
//! it gets there). The copy is made consistent by the audit log, the one structure whose
//! invariants other state is checked against:
//!
//! - the **audit tree** is cut at a size `N` the caller knows durable: entries, transfer ids
//!   and signed checkpoints beyond `N` are left out, subtree hashes that cover leaves beyond
//!   `N` too, the tile holding leaf `N` is shortened to its first `N % width` hashes, the size
//!   is `N` and the latest checkpoint the newest one at or below `N`. Everything at or below
//!   `N` is append-only (a leaf, its tile prefix, a full subtree never change once written), so
//!   the cut is exactly the log as it was when its size was `N`, however long the copy takes.
//! - every **other tree** is copied as it is when the iteration reaches each key. State newer
//!   than the cut is reconciled by the node's start-up like after a crash: an outbox receipt
//!   whose transfer is beyond the cut is dropped (`drop_orphan_receipts`), a pending intent
//!   without its leaf is declared unacknowledged by the sweeper, a transfer id beyond the cut is
//!   not in the index (so it is logged afresh if it comes again), records and policies are
//!   signed documents that are valid whatever the log holds.
//! - two trees written together in one sled transaction (a record, its lot and its retention
//!   deadline) can be caught half-way: a deadline without its record is dropped by retention
//!   (as today); a foreign record without its deadline would be kept for ever, so
//!   [`Store::import`] gives every record with a retention deadline its deadline entry.
//!
//! The restored marker (`meta` key `restored_from`) is never exported: a store restored from a
//! backup carries the marker of its own restore only.

use crate::{Store, StoreError, data::deadline_key};

/// sled's default tree, which the store does not use.
const DEFAULT_TREE: &[u8] = b"__sled__default";
/// Set by [`Store::import`]: the audit size of the backup's cut, then when it was restored.
const RESTORED_KEY: &[u8] = b"restored_from";

/// Where the audit log is cut: its size, and how many leaf hashes a tile holds (the node's
/// grouping, see ftz-node's `audit::tree`; the store keeps tiles as given).
#[derive(Debug, Clone, Copy)]
pub struct AuditCut {
    pub size: u64,
    pub leaves_per_tile: u64,
}

/// One key of one tree.
pub type Exported = (String, Vec<u8>, Vec<u8>);

/// What the restore marker says: the audit size the backup was cut at, and when it was
/// restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredMarker {
    pub audit_size: u64,
    pub restored_at_ms: i64,
}

/// Key/value pairs of one tree, in key order.
pub type Pairs<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

impl Store {
    /// The trees a backup holds, in the order it holds them (sorted by name).
    pub fn backup_trees(&self) -> Vec<String> {
        // The trees every store has (a sled store also lists its default tree, never used).
        crate::TREES.iter().map(|t| t.to_string()).collect()
    }

    /// Every key of `tree` as a consistent backup at `cut` holds it (see the module's comment),
    /// in key order. Reads only.
    pub fn export_tree(&self, tree: &str, cut: AuditCut) -> Result<Pairs<'_>, StoreError> {
        let t = self.db.open_tree(tree)?;
        if tree == "audit" {
            let latest = self.checkpoints_before(Some(cut.size.saturating_add(1)), 1)?.into_iter().next();
            let iter = t.iter().filter_map(move |kv| match kv {
                Err(e) => Some(Err(e)),
                Ok((k, v)) => audit_at_cut(&k, &v, cut, latest.as_ref()).map(Ok),
            });
            // The size and the latest checkpoint are stated, whatever the tree holds now.
            let head = std::iter::once(Ok((b"s".to_vec(), cut.size.to_be_bytes().to_vec())));
            return Ok(Box::new(head.chain(iter)));
        }
        let is_meta = tree == "meta";
        Ok(Box::new(t.iter().filter_map(move |kv| match kv {
            Err(e) => Some(Err(e)),
            Ok((k, _)) if is_meta && k.as_ref() == RESTORED_KEY => None,
            Ok((k, v)) => Some(Ok((k.to_vec(), v.to_vec()))),
        })))
    }

    /// Whether nothing but the format version is stored: a store a restore may write into.
    pub fn is_empty_store(&self) -> Result<bool, StoreError> {
        for name in self.backup_trees() {
            let t = self.db.open_tree(&name)?;
            for kv in t.iter() {
                let (k, _) = kv?;
                if !(name == "meta" && k.as_ref() == crate::FORMAT_KEY) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Writes a backup's keys into this empty store (see [`Importer`]). The caller has verified
    /// the backup (checksums, manifest) before calling: nothing here undoes a partial import,
    /// which is why the store must be empty.
    pub fn import_begin(&self) -> Result<Importer<'_>, StoreError> {
        if !self.is_empty_store()? {
            return Err(StoreError::Corrupt { what: "restore", detail: "the store is not empty".into() });
        }
        Ok(Importer { store: self, open: None, written: 0 })
    }

    /// [`Store::import_begin`], every key of `entries`, then [`Importer::finish`].
    pub fn import(
        &self,
        entries: impl IntoIterator<Item = Exported>,
        marker: RestoredMarker,
    ) -> Result<u64, StoreError> {
        let mut im = self.import_begin()?;
        for (tree, k, v) in entries {
            im.put(&tree, &k, &v)?;
        }
        im.finish(marker)
    }

    /// The restore marker, if this store was restored from a backup and its witnesses have not
    /// yet confirmed that its log is not behind what they hold.
    pub fn restored_marker(&self) -> Result<Option<RestoredMarker>, StoreError> {
        let Some(v) = self.meta.get(RESTORED_KEY)? else { return Ok(None) };
        if v.len() != 16 {
            return Err(StoreError::Corrupt { what: "restored_from", detail: "not 16 bytes".into() });
        }
        let (a, b) = v.split_at(8);
        Ok(Some(RestoredMarker {
            audit_size: u64::from_be_bytes(a.try_into().unwrap_or_default()),
            restored_at_ms: i64::from_be_bytes(b.try_into().unwrap_or_default()),
        }))
    }

    /// Removes the restore marker (the witnesses confirmed the log). Durable on return.
    pub fn clear_restored_marker(&self) -> Result<(), StoreError> {
        self.meta.remove(RESTORED_KEY)?;
        self.flush()
    }
}

/// An import under way: keys are written as they come, then [`Importer::finish`] repairs what
/// a copy without a snapshot can miss, marks the store restored and flushes.
pub struct Importer<'a> {
    store: &'a Store,
    open: Option<(String, crate::kv::Tree)>,
    written: u64,
}

impl Importer<'_> {
    pub fn put(&mut self, tree: &str, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        if tree.as_bytes() == DEFAULT_TREE || (tree == "meta" && k == RESTORED_KEY) {
            return Ok(());
        }
        if self.open.as_ref().is_none_or(|(name, _)| name != tree) {
            self.open = Some((tree.to_string(), self.store.db.open_tree(tree)?));
        }
        if let Some((_, t)) = &self.open {
            t.insert(k, v)?;
        }
        self.written += 1;
        Ok(())
    }

    /// Gives every record with a retention deadline its deadline entry (a copy made while
    /// records came and went can hold a record without it), marks the store as restored at
    /// `marker`, and flushes. Returns the keys written.
    pub fn finish(self, marker: RestoredMarker) -> Result<u64, StoreError> {
        let s = self.store;
        for kv in s.records.iter() {
            let (k, v) = kv?;
            let until = crate::records::retain_until(&v)?;
            if until > 0 {
                let d = deadline_key(until, &String::from_utf8_lossy(&k));
                if !s.deadlines.contains_key(&d)? {
                    s.deadlines.insert(d, &[][..])?;
                }
            }
        }
        let mut m = marker.audit_size.to_be_bytes().to_vec();
        m.extend_from_slice(&marker.restored_at_ms.to_be_bytes());
        s.meta.insert(RESTORED_KEY, m)?;
        s.db.flush()?;
        Ok(self.written)
    }
}

/// One key of the audit tree as the log at `cut` holds it, or `None` if it is beyond the cut.
fn audit_at_cut(k: &[u8], v: &[u8], cut: AuditCut, latest: Option<&(u64, String)>) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = cut.size;
    let num = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
    let keep = match k.first() {
        // Size and latest checkpoint: stated by the caller, not copied. The edge kept with the
        // size (PostgreSQL) is of the whole log: left out, appenders rebuild it from the tree.
        Some(b's' | b'f') => return None,
        Some(b'c') => {
            return latest.map(|(size, note)| {
                let mut v = size.to_be_bytes().to_vec();
                v.extend_from_slice(note.as_bytes());
                (k.to_vec(), v)
            });
        }
        Some(b'e') if k.len() == 9 => num(&k[1..]).is_some_and(|i| i < n),
        Some(b'h') if k.len() == 9 => num(&k[1..]).is_some_and(|s| s <= n),
        Some(b't') if k.len() == 17 => num(v).is_some_and(|i| i < n),
        Some(b'n') if k.len() == 10 => {
            let (level, index) = (u32::from(k[1]), num(&k[2..]).unwrap_or(u64::MAX));
            index.checked_add(1).and_then(|i| i.checked_shl(level)).is_some_and(|end| end <= n)
        }
        Some(b'b') if k.len() == 9 => {
            let t = num(&k[1..]).unwrap_or(u64::MAX);
            let first = t.saturating_mul(cut.leaves_per_tile);
            if first >= n {
                return None;
            }
            let filled = usize::try_from((n - first).min(cut.leaves_per_tile)).unwrap_or(usize::MAX);
            let len = filled.saturating_mul(32).min(v.len());
            return Some((k.to_vec(), v[..len].to_vec()));
        }
        // Anything else the tree holds is kept as it is.
        _ => true,
    };
    keep.then(|| (k.to_vec(), v.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditBatch, StoreOptions};

    fn export_all(s: &Store, cut: AuditCut) -> Vec<Exported> {
        let mut out = Vec::new();
        for tree in s.backup_trees() {
            for kv in s.export_tree(&tree, cut).unwrap() {
                let (k, v) = kv.unwrap();
                out.push((tree.clone(), k, v));
            }
        }
        out
    }

    #[test]
    fn the_audit_log_is_cut_at_the_size_given_and_the_rest_copied_and_restored_once() {
        for place in crate::testing::places() {
            let s = place.open();
            // Four leaves in tiles of 2; checkpoints at 2 and 4; a transfer at index 3.
            let b = |old: u64, leaves: Vec<&[u8]>, tiles, nodes, transfers| AuditBatch {
                old_size: old,
                leaves: leaves.into_iter().map(<[u8]>::to_vec).collect(),
                tiles,
                nodes,
                transfers,
                outbox: vec![],
                edge: vec![],
            };
            s.audit_append(&b(
                0,
                vec![b"a", b"b", b"c"],
                vec![(0, [[1; 32], [2; 32]].concat()), (1, vec![3; 32])],
                vec![(1, 0, [9; 32])],
                vec![],
            ))
            .unwrap();
            s.put_checkpoint(2, "two\n").unwrap();
            s.audit_append(&b(
                3,
                vec![b"d"],
                vec![(1, [[3; 32], [4; 32]].concat())],
                vec![(1, 1, [8; 32]), (2, 0, [7; 32])],
                vec![([5; 16], 3)],
            ))
            .unwrap();
            s.put_checkpoint(4, "four\n").unwrap();
            s.put_pending_intent(&[6; 16], 10, b"intent").unwrap();

            let cut = AuditCut { size: 3, leaves_per_tile: 2 };
            let all = export_all(&s, cut);
            let audit: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
                all.iter().filter(|(t, _, _)| t == "audit").map(|(_, k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(audit[&b"s".to_vec()], 3u64.to_be_bytes());
            assert!(audit.contains_key(&entry(2)) && !audit.contains_key(&entry(3)));
            assert_eq!(audit[&tile(1)], vec![3; 32], "the tile of leaf 3 holds only leaf 2's hash");
            assert!(
                audit.contains_key(&node(1, 0)) && !audit.contains_key(&node(1, 1)) && !audit.contains_key(&node(2, 0))
            );
            assert!(!audit.keys().any(|k| k[0] == b't'), "the transfer at index 3 is beyond the cut");
            assert_eq!(&audit[&b"c".to_vec()][8..], b"two\n", "the latest checkpoint at or below the cut");
            assert!(!audit.keys().any(|k| k == &[b"h".as_slice(), &4u64.to_be_bytes()].concat()));
            assert!(all.iter().any(|(t, _, v)| t == "pending_intents" && v.ends_with(b"intent")));

            let dir2 = tempfile::tempdir().unwrap();
            let r = Store::open(dir2.path(), StoreOptions::default()).unwrap();
            assert!(r.is_empty_store().unwrap());
            assert_eq!(r.restored_marker().unwrap(), None);
            let marker = RestoredMarker { audit_size: 3, restored_at_ms: 77 };
            r.import(all.clone(), marker).unwrap();
            assert_eq!(r.audit_size().unwrap(), 3);
            assert_eq!(r.latest_checkpoint().unwrap(), Some((2, "two\n".into())));
            assert_eq!(r.audit_entry(2).unwrap().as_deref(), Some(b"c".as_slice()));
            assert_eq!(r.restored_marker().unwrap(), Some(marker));
            // A second import, or one into a store that holds anything, is refused.
            assert!(r.import(all, marker).is_err());
            // The marker is not exported.
            assert!(!export_all(&r, cut).iter().any(|(t, k, _)| t == "meta" && k == RESTORED_KEY));
            r.clear_restored_marker().unwrap();
            assert_eq!(r.restored_marker().unwrap(), None);
        }
    }

    fn entry(i: u64) -> Vec<u8> {
        [b"e".as_slice(), &i.to_be_bytes()].concat()
    }
    fn tile(i: u64) -> Vec<u8> {
        [b"b".as_slice(), &i.to_be_bytes()].concat()
    }
    fn node(level: u8, i: u64) -> Vec<u8> {
        [b"n".as_slice(), &[level], &i.to_be_bytes()].concat()
    }
}
