//! Planning one batch of appends, with no I/O: where each leaf goes, the hashes it completes
//! (tiles, and subtrees from [`TILE_HEIGHT`] up), and the right edge of the tree after it. The
//! appender ([`super::log`]) reads the edge once at start, plans each batch here, commits the
//! plan to the store and keeps the planned edge: the in-memory edge is the tree's truth between
//! batches.

use ftz_audit::merkle::{Hash, Nodes, empty_root, leaf_hash, node_hash};
use ftz_store::{AuditBatch, OutboxItem};

use super::tree::{TILE_HEIGHT, TILE_WIDTH};

/// Where the log stands: its size, the perfect subtrees along its right edge (left to right,
/// with their levels), and the leaf hashes of its last, partial tile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Edge {
    pub size: u64,
    pub front: Vec<(u32, Hash)>,
    pub tile: Vec<Hash>,
}

/// The perfect subtrees along the right edge of a tree of `size` leaves, left to right.
pub(crate) fn frontier<N: Nodes>(nodes: &N, size: u64) -> Result<Vec<(u32, Hash)>, N::Error> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for level in (0..64u32).rev() {
        if size & (1 << level) != 0 {
            out.push((level, nodes.node(level, offset >> level)?));
            offset += 1 << level;
        }
    }
    Ok(out)
}

/// The root of the tree whose right edge is `frontier`.
pub(crate) fn root_of(frontier: &[(u32, Hash)]) -> Hash {
    let mut it = frontier.iter().rev();
    let Some((_, last)) = it.next() else { return empty_root() };
    it.fold(*last, |acc, (_, h)| node_hash(h, &acc))
}

/// One leaf to append.
pub(crate) struct Entry<'a> {
    pub leaf: &'a [u8],
    /// A transfer leaf is logged once per transfer id.
    pub transfer_id: Option<[u8; 16]>,
    /// Queued in the outbox with the batch, if this leaf is new.
    pub outbox: Option<&'a OutboxItem>,
}

/// Where an entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub index: u64,
    /// The transfer was in the log already (before, or earlier in this batch): nothing appended.
    pub duplicate: bool,
}

/// A planned batch: what to write, where each entry went, and the edge once it is written.
pub(crate) struct Plan {
    pub batch: AuditBatch,
    pub placed: Vec<Placed>,
    pub edge: Edge,
}

/// Plans appending `entries` after `edge`. `logged(id)` is the index of a transfer already in
/// the log; such entries, and repeats of a transfer id within the batch, are duplicates.
pub(crate) fn plan<'a>(
    edge: &Edge,
    entries: impl IntoIterator<Item = Entry<'a>>,
    mut logged: impl FnMut(&[u8; 16]) -> Option<u64>,
) -> Plan {
    let size = edge.size;
    let mut b = AuditBatch { old_size: size, ..Default::default() };
    let mut front = edge.front.clone();
    let mut tile = edge.tile.clone();
    let mut placed = Vec::new();
    let mut seen: Vec<([u8; 16], u64)> = Vec::new();
    for e in entries {
        if let Some(id) = e.transfer_id
            && let Some(index) = logged(&id).or_else(|| seen.iter().find(|(s, _)| *s == id).map(|(_, i)| *i))
        {
            placed.push(Placed { index, duplicate: true });
            continue;
        }
        let index = size + b.leaves.len() as u64;
        let mut h = leaf_hash(e.leaf);
        tile.push(h);
        if tile.len() as u64 == TILE_WIDTH {
            b.tiles.push((index / TILE_WIDTH, tile.concat()));
            tile.clear();
        }
        let (mut level, mut i) = (0u32, index);
        front.push((0, h));
        while i & 1 == 1 {
            let (_, right) = front.pop().unwrap_or((0, h));
            let (_, left) = front.pop().unwrap_or((0, h));
            h = node_hash(&left, &right);
            level += 1;
            i >>= 1;
            if level >= TILE_HEIGHT {
                b.nodes.push((level, i, h));
            }
            front.push((level, h));
        }
        if let Some(id) = e.transfer_id {
            b.transfers.push((id, index));
            seen.push((id, index));
        }
        b.leaves.push(e.leaf.to_vec());
        b.outbox.extend(e.outbox.cloned());
        placed.push(Placed { index, duplicate: false });
    }
    let new_size = size + b.leaves.len() as u64;
    if !tile.is_empty() && new_size > size {
        b.tiles.push(((new_size - 1) / TILE_WIDTH, tile.concat()));
    }
    Plan { batch: b, placed, edge: Edge { size: new_size, front, tile } }
}

#[cfg(test)]
mod tests {
    use ftz_audit::merkle::MemoryTree;

    use super::*;

    fn leaf(i: u64) -> Vec<u8> {
        format!("leaf {i}").into_bytes()
    }

    #[test]
    fn planned_edges_give_the_reference_roots_and_tiles() {
        let mut reference = MemoryTree::new();
        let mut edge = Edge::default();
        let mut next = 0u64;
        for burst in [1u64, 3, 16, 17, 5, 40, 2, 64, 9] {
            let leaves: Vec<Vec<u8>> = (next..next + burst).map(leaf).collect();
            let p = plan(&edge, leaves.iter().map(|l| Entry { leaf: l, transfer_id: None, outbox: None }), |_| None);
            assert_eq!(p.batch.leaves.len() as u64, burst);
            assert!(
                p.placed.iter().enumerate().all(|(k, pl)| *pl == Placed { index: next + k as u64, duplicate: false })
            );
            for l in &leaves {
                reference.push(l);
            }
            next += burst;
            assert_eq!(p.edge.size, next);
            assert_eq!(root_of(&p.edge.front), reference.root_at(next), "root at {next}");
            // The last tile written holds the leaf hashes of the last partial or full tile.
            let (t, bytes) = p.batch.tiles.last().unwrap();
            assert_eq!(*t, (next - 1) / TILE_WIDTH);
            assert_eq!(bytes.len() as u64, 32 * (((next - 1) % TILE_WIDTH) + 1));
            edge = p.edge;
        }
    }

    #[test]
    fn a_transfer_already_logged_or_repeated_in_the_batch_is_a_duplicate() {
        let edge = Edge::default();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let l = b"x".to_vec();
        let entries = [Some(a), Some(b), Some(a), None].map(|t| Entry { leaf: &l, transfer_id: t, outbox: None });
        let p = plan(&edge, entries, |id| (*id == b).then_some(7));
        assert_eq!(
            p.placed,
            vec![
                Placed { index: 0, duplicate: false },
                Placed { index: 7, duplicate: true },
                Placed { index: 0, duplicate: true },
                Placed { index: 1, duplicate: false },
            ]
        );
        assert_eq!(p.batch.leaves.len(), 2);
        assert_eq!(p.batch.transfers, vec![(a, 0)]);
    }
}
