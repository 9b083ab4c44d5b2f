//! RFC 6962 / RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs, and
//! their verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 describe.
//!
//! Trees are read through [`Nodes`]: the hash of any *perfect* subtree (2^level leaves starting
//! at a multiple of 2^level). Every range the RFC's recursive definitions visit is either such a
//! subtree or splits into them, so a store that keeps perfect subtree hashes answers any root or
//! proof with O(log n) reads.

use thiserror::Error;

pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// MTH of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// Read access to the perfect subtrees of a tree.
pub trait Nodes {
    type Error;
    /// The hash of the subtree of `2^level` leaves starting at leaf `index << level`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]). `start` is a multiple of the largest power of two not above the length,
/// as in every range the RFC's definitions visit.
fn mth<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let len = end - start;
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return nodes.node(level, start >> level);
    }
    let k = split(len);
    Ok(node_hash(&mth(nodes, start, start + k)?, &mth(nodes, start + k, end)?))
}

/// The root of the tree of the first `size` leaves.
pub fn root<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    mth(nodes, 0, size)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("sizes {size1} and {size2}: the first must not exceed the second")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("the proof does not lead to the expected old root")]
    OldRootMismatch,
    #[error("equal sizes need an empty proof and equal roots")]
    EqualSizes,
}

/// PATH(m, D[start:end]) of RFC 6962 §2.1.1 (RFC 9162 §2.1.3.1), bottom-up.
fn path<N: Nodes>(nodes: &N, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), N::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, out)?;
        out.push(mth(nodes, start + k, end)?);
    } else {
        path(nodes, m - k, start + k, end, out)?;
        out.push(mth(nodes, start, start + k)?);
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Result<Vec<Hash>, ProofError>, N::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut out = Vec::with_capacity(64);
    path(nodes, index, 0, size, &mut out)?;
    Ok(Ok(out))
}

/// SUBPROOF(m, D[start:end], b) of RFC 6962 §2.1.2 (RFC 9162 §2.1.4.1).
fn subproof<N: Nodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(mth(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, complete, out)?;
        out.push(mth(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, out)?;
        out.push(mth(nodes, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `size1` leaves to the tree of `size2` leaves. Empty
/// when `size1` is 0 or equal to `size2`.
pub fn consistency_proof<N: Nodes>(
    nodes: &N,
    size1: u64,
    size2: u64,
) -> Result<Result<Vec<Hash>, ProofError>, N::Error> {
    if size1 > size2 {
        return Ok(Err(ProofError::SizesOutOfOrder { size1, size2 }));
    }
    let mut out = Vec::with_capacity(64);
    if size1 > 0 && size1 < size2 {
        subproof(nodes, size1, 0, size2, true, &mut out)?;
    }
    Ok(Ok(out))
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is the leaf at `index` of the tree of `size` leaves
/// whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    // 1. If leaf_index is greater than or equal to tree_size, then stop and fail.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let (mut fnn, mut sn) = (index, size - 1);
    // 3. Set r to hash.
    let mut r = *leaf;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnn & 1 == 1 || fnn == sn {
            // i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            //     LSB(fn) is set or fn is 0.
            while fnn & 1 == 0 && fnn != 0 {
                fnn >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: Set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnn >>= 1;
        sn >>= 1;
    }
    // 5. Compare sn to 0. Compare r against the root hash. If sn is equal to 0 and r and the
    //    root hash are equal, then the log has proven the inclusion of hash.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `size1` leaves with root `root1` is a prefix of
/// the tree of `size2` leaves with root `root2`. The RFC's algorithm covers 0 < size1 < size2;
/// the edge cases are decided first: size1 > size2 fails; equal sizes need an empty proof and
/// equal roots; the empty tree is a prefix of every tree, with an empty proof.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == size2 {
        return if proof.is_empty() && root1 == root2 { Ok(()) } else { Err(ProofError::EqualSizes) };
    }
    if size1 == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength) };
    }
    // 1. If consistency_path is an empty array, then stop and fail the proof verification.
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    // 3. Set fn to first - 1 and sn to second - 1.
    let (mut fnn, mut sn) = (size1 - 1, size2 - 1);
    // 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fnn & 1 == 1 {
        fnn >>= 1;
        sn >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let (mut fr, mut sr) = (path[0], path[0]);
    // 6. For each subsequent value c in the consistency_path array:
    for c in &path[1..] {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnn & 1 == 1 || fnn == sn {
            // i. Set fr to HASH(0x01 || c || fr).  ii. Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // iii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            //      LSB(fn) is set or fn is 0.
            while fnn & 1 == 0 && fnn != 0 {
                fnn >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: Set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnn >>= 1;
        sn >>= 1;
    }
    // 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A whole tree in memory, level by level: for tests, for offline verifiers that rebuild a log
/// from its entries, and as the model the store's layout follows.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]`: the perfect subtree of level `l` and index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf (its data, hashed here) and returns its index.
    pub fn push(&mut self, leaf: &[u8]) -> u64 {
        self.push_hash(leaf_hash(leaf))
    }

    /// Appends a leaf hash; completes every perfect subtree it closes.
    pub fn push_hash(&mut self, h: Hash) -> u64 {
        let index = self.size();
        let mut level = 0;
        let mut i = index;
        let mut cur = h;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(cur);
            if i & 1 == 0 {
                break;
            }
            let left = self.levels[level][(i - 1) as usize];
            cur = node_hash(&left, &cur);
            level += 1;
            i >>= 1;
        }
        index
    }

    pub fn root(&self) -> Hash {
        self.root_at(self.size())
    }

    /// The root of the first `size` leaves (`size` at most the tree's size).
    pub fn root_at(&self, size: u64) -> Hash {
        match root(self, size) {
            Ok(h) => h,
            Err(never) => match never {},
        }
    }
}

impl Nodes for MemoryTree {
    type Error = std::convert::Infallible;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        // Every (level, index) the algorithms ask for exists: ranges stay within the size.
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests;
