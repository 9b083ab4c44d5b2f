//! How the log's Merkle tree is kept, so that a proof costs one store read.
//!
//! Stored (durable, in the same transaction as the leaves):
//! - *tiles*: the leaf hashes of 16 consecutive leaves in one value (a partial last tile holds
//!   fewer). The 15 subtrees inside a tile (levels 1 to 3) are not stored: they are rehashed from
//!   the tile when asked for, which costs at most 7 SHA-256 and saves ~1.9 writes per leaf.
//! - every perfect subtree from level 4 up, one value each.
//!
//! In memory ([`UpperLevels`]): the subtrees from level 4 up (2 hashes per 32 leaves, about 2 MB
//! for 1M entries), loaded at start and extended after each durable batch, up to a bound beyond
//! which the lowest cached levels are read from the store again. An inclusion proof at 1M entries
//! is then one tile read, a few hashes and ~16 memory reads, instead of 20 random store reads.

use std::{
    cell::RefCell,
    sync::{Arc, RwLock},
};

use ftz_audit::merkle::{Hash, Nodes, node_hash};
use ftz_store::{Store, StoreError};

/// Leaves per tile, and its log.
pub const TILE_HEIGHT: u32 = 4;
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// At most this many hashes cached in memory (32 MiB). Logs up to ~16M entries keep every level
/// from [`TILE_HEIGHT`] up in memory; larger ones drop their lowest cached levels.
const MAX_CACHED: usize = 1 << 20;

/// The subtrees from `lowest` up, by level: `levels[l][i]` is the node at level `l`, index `i`.
#[derive(Debug, Default)]
pub struct UpperLevels {
    lowest: u32,
    levels: Vec<Vec<Hash>>,
    count: usize,
}

impl UpperLevels {
    /// Loads the stored levels from [`TILE_HEIGHT`] up, of the log's `size` leaves (nodes a
    /// batch cut short by a crash wrote beyond it are not the log's).
    pub fn load(store: &Store, size: u64) -> Result<Self, StoreError> {
        let mut me = Self { lowest: TILE_HEIGHT, levels: vec![Vec::new(); TILE_HEIGHT as usize], count: 0 };
        for level in TILE_HEIGHT..64 {
            let count = size >> level;
            if count == 0 {
                break;
            }
            let hashes = store.audit_level(level, count)?;
            if hashes.len() as u64 != count {
                return Err(StoreError::Corrupt { what: "audit node", detail: format!("level {level} is short") });
            }
            me.count += hashes.len();
            me.levels.push(hashes);
        }
        me.bound();
        Ok(me)
    }

    /// Adds nodes a durable batch completed (each level's in index order).
    pub fn extend(&mut self, nodes: &[(u32, u64, Hash)]) {
        for &(level, index, hash) in nodes {
            if level < self.lowest {
                continue;
            }
            while self.levels.len() <= level as usize {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level as usize];
            // Nodes come in order; anything else means the cache is behind: leave it to the store.
            if row.len() as u64 == index {
                row.push(hash);
                self.count += 1;
            }
        }
        self.bound();
    }

    /// Reads from the store the nodes of a log of `size` leaves that the cache lacks (other
    /// replicas appended them): each cached level up to `size`'s nodes. The store holds
    /// every node of a size it holds.
    pub fn catch_up(&mut self, store: &Store, size: u64) -> Result<(), StoreError> {
        for level in self.lowest..64 {
            let want = size >> level;
            if want == 0 {
                break;
            }
            while self.levels.len() <= level as usize {
                self.levels.push(Vec::new());
            }
            let have = self.levels[level as usize].len() as u64;
            if have < want {
                let more = store.audit_level_range(level, have, want)?;
                if more.len() as u64 != want - have {
                    return Err(StoreError::Corrupt { what: "audit node", detail: format!("level {level} is short") });
                }
                self.count += more.len();
                self.levels[level as usize].extend(more);
            }
        }
        self.bound();
        Ok(())
    }

    fn bound(&mut self) {
        while self.count > MAX_CACHED && (self.lowest as usize) < self.levels.len() {
            let dropped = std::mem::take(&mut self.levels[self.lowest as usize]);
            self.count -= dropped.len();
            self.lowest += 1;
        }
    }

    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        if level < self.lowest {
            return None;
        }
        self.levels.get(level as usize)?.get(usize::try_from(index).ok()?).copied()
    }

    /// Hashes held (for status and benchmarks).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Reads the stored tree for one proof or root: tiles (the last one read is kept for the next
/// node, since a proof asks for several nodes of the same tile), cached levels, then the store.
pub struct TreeReader<'a> {
    store: &'a Store,
    cache: Option<&'a RwLock<UpperLevels>>,
    tile: RefCell<Option<(u64, Vec<u8>)>>,
}

impl<'a> TreeReader<'a> {
    /// Reads with the running log's cache.
    pub fn new(store: &'a Store, cache: &'a Arc<RwLock<UpperLevels>>) -> Self {
        Self { store, cache: Some(cache), tile: RefCell::new(None) }
    }

    /// Reads the store only (at start, before the log runs).
    pub fn uncached(store: &'a Store) -> Self {
        Self { store, cache: None, tile: RefCell::new(None) }
    }

    fn missing(level: u32, index: u64) -> StoreError {
        StoreError::Corrupt { what: "audit node", detail: format!("missing node level {level} index {index}") }
    }

    fn in_tile(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let first = index << level;
        let tile = first >> TILE_HEIGHT;
        let mut memo = self.tile.borrow_mut();
        if memo.as_ref().is_none_or(|(t, _)| *t != tile) {
            let bytes = self.store.audit_tile(tile)?.ok_or_else(|| Self::missing(level, index))?;
            *memo = Some((tile, bytes));
        }
        let bytes = memo.as_ref().map(|(_, b)| b.as_slice()).unwrap_or_default();
        let offset = ((first % TILE_WIDTH) * 32) as usize;
        let width = 32usize << level;
        let leaves = bytes.get(offset..offset + width).ok_or_else(|| Self::missing(level, index))?;
        let mut row: Vec<Hash> = leaves.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect();
        while row.len() > 1 {
            row = row.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        Ok(row[0])
    }
}

impl Nodes for TreeReader<'_> {
    type Error = StoreError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        if level < TILE_HEIGHT {
            return self.in_tile(level, index);
        }
        if let Some(h) = self.cache.and_then(|c| c.read().unwrap_or_else(|e| e.into_inner()).get(level, index)) {
            return Ok(h);
        }
        self.store.audit_node(level, index)?.ok_or_else(|| Self::missing(level, index))
    }
}

#[cfg(test)]
mod tests {
    use ftz_audit::{
        leaf::Leaf,
        merkle::{MemoryTree, consistency_proof, inclusion_proof, root},
    };

    use super::*;
    use crate::audit::AuditLog;

    fn leaf(i: u64) -> Leaf {
        Leaf::Config { at_ms: i as i64, what: "test".into(), id: format!("leaf-{i}"), version: i, digest: [7; 32] }
    }

    /// Every root and proof from tiles, cached levels and stored levels equals the reference
    /// tree's, at every size, across batches that start and end mid-tile and across a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_tree_answers_like_the_reference_at_every_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut reference = MemoryTree::new();
        let mut next = 0u64;
        for restart in 0..2 {
            let store = Store::open(dir.path(), Default::default()).unwrap();
            let log = AuditLog::start(store.clone()).unwrap();
            // Batches of many sizes: concurrent appends are grouped by the appender.
            for burst in [1u64, 3, 16, 17, 5, 40, 2, 64, 9] {
                let appends: Vec<_> = (next..next + burst)
                    .map(|i| {
                        let log = log.clone();
                        tokio::spawn(async move { log.append(&leaf(i), None).await.unwrap() })
                    })
                    .collect();
                for a in appends {
                    a.await.unwrap();
                }
                // Appends may be ordered differently from the spawns: the reference follows the log.
                let size = store.audit_size().unwrap();
                for (_, e) in store.audit_entries(next, burst as usize).unwrap() {
                    reference.push(&e);
                }
                next = size;
            }
            let size = next;
            assert_eq!(reference.size(), size);
            for (name, tree) in [("cached", log.tree()), ("uncached", TreeReader::uncached(&store))] {
                for s in 1..=size {
                    assert_eq!(root(&tree, s).unwrap(), reference.root_at(s), "{name} root at {s}");
                }
                for s in [1, 15, 16, 17, 31, 32, 33, 100, size] {
                    for i in (0..s).step_by(7).chain([s - 1]) {
                        assert_eq!(
                            inclusion_proof(&tree, i, s).unwrap(),
                            inclusion_proof(&reference, i, s).unwrap(),
                            "{name} inclusion {i} in {s} (restart {restart})"
                        );
                    }
                    for old in [1, 4, 16, 17, s / 2, s] {
                        let old = old.min(s);
                        assert_eq!(
                            consistency_proof(&tree, old, s).unwrap(),
                            consistency_proof(&reference, old, s).unwrap(),
                            "{name} consistency {old} to {s}"
                        );
                    }
                }
            }
            assert!(log.cached_hashes() > 0);
            log.close().await;
        }
    }

    #[test]
    fn the_cache_stays_bounded_by_dropping_its_lowest_levels() {
        let mut c = UpperLevels { lowest: TILE_HEIGHT, levels: vec![Vec::new(); 4], count: 0 };
        let n = MAX_CACHED as u64 + 10;
        let nodes: Vec<_> = (0..n).map(|i| (TILE_HEIGHT, i, [1; 32])).collect();
        c.extend(&nodes);
        assert_eq!(c.lowest, TILE_HEIGHT + 1);
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(TILE_HEIGHT, 0), None);
        c.extend(&[(TILE_HEIGHT + 1, 0, [2; 32]), (TILE_HEIGHT + 1, 5, [3; 32])]);
        assert_eq!(c.get(TILE_HEIGHT + 1, 0), Some([2; 32]));
        // Out of order: not cached (the store answers).
        assert_eq!(c.get(TILE_HEIGHT + 1, 5), None);
    }
}
