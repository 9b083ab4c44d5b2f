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

impl Edge {
    /// The edge as stored with the log's size on a shared store (see [`AuditBatch::edge`]):
    /// the size, then each frontier subtree (level, hash), then the partial tile's hashes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 2 + self.front.len() * 33 + 1 + self.tile.len() * 32);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.push(self.front.len() as u8);
        for (level, hash) in &self.front {
            out.push(*level as u8);
            out.extend_from_slice(hash);
        }
        out.push(self.tile.len() as u8);
        for hash in &self.tile {
            out.extend_from_slice(hash);
        }
        out
    }

    /// The edge [`Edge::encode`] wrote; `None` if the bytes are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Edge> {
        let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let mut rest = &bytes[8..];
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let fronts = take(1)?[0] as usize;
        let mut front = Vec::with_capacity(fronts);
        for _ in 0..fronts {
            let level = u32::from(take(1)?[0]);
            front.push((level, take(32)?.try_into().ok()?));
        }
        let tiles = take(1)?[0] as usize;
        let tile = (0..tiles).map(|_| take(32).and_then(|h| h.try_into().ok())).collect::<Option<Vec<Hash>>>()?;
        let edge = Edge { size, front, tile };
        // What the edge of a log of this size must look like: one subtree per bit of the
        // size, and the leaves of its last partial tile.
        let shaped = edge.front.len() == size.count_ones() as usize
            && edge.tile.len() as u64 == size % TILE_WIDTH
            && rest.is_empty();
        shaped.then_some(edge)
    }
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
    let edge = Edge { size: new_size, front, tile };
    b.edge = edge.encode();
    Plan { batch: b, placed, edge }
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
    fn an_edge_stored_with_the_size_reads_back_and_a_misshapen_one_does_not() {
        let mut edge = Edge::default();
        for burst in [1u64, 15, 16, 33, 200] {
            let leaves: Vec<Vec<u8>> = (0..burst).map(leaf).collect();
            let p = plan(&edge, leaves.iter().map(|l| Entry { leaf: l, transfer_id: None, outbox: None }), |_| None);
            assert_eq!(Edge::decode(&p.batch.edge), Some(p.edge.clone()), "at size {}", p.edge.size);
            edge = p.edge;
        }
        let bytes = edge.encode();
        assert_eq!(Edge::decode(&bytes[..bytes.len() - 1]), None, "short");
        let mut wrong_size = bytes.clone();
        wrong_size[7] ^= 1;
        assert_eq!(Edge::decode(&wrong_size), None, "a frontier that is not this size's");
        assert_eq!(Edge::decode(&[]), None);
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
