//! The Merkle algorithms against a naive recursive reference (the RFC's definitions written
//! literally over leaf lists), by proptest, and against public known-answer vectors.

use proptest::prelude::*;

use super::*;

/// MTH(D) of RFC 6962 §2.1, literally.
fn ref_mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => leaf_hash(&d[0]),
        n => {
            let k = split(n as u64) as usize;
            node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
        }
    }
}

/// PATH(m, D), literally.
fn ref_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n as u64) as usize;
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D, b), literally.
fn ref_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(d)] };
    }
    let k = split(n as u64) as usize;
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn tree(d: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in d {
        t.push(l);
    }
    t
}

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

fn ok<T>(r: Result<Result<T, ProofError>, std::convert::Infallible>) -> Result<T, ProofError> {
    match r {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn roots_and_proofs_match_the_reference(n in 1usize..70, m_seed in 0usize..1000, k_seed in 0usize..1000) {
        let d = leaves(n);
        let t = tree(&d);
        let m = m_seed % n;
        prop_assert_eq!(t.root(), ref_mth(&d));
        let p = ok(inclusion_proof(&t, m as u64, n as u64)).unwrap();
        prop_assert_eq!(&p, &ref_path(m, &d));
        prop_assert!(verify_inclusion(&leaf_hash(&d[m]), m as u64, n as u64, &p, &t.root()).is_ok());
        // Every prefix tree's root and the consistency proof to it.
        let k = 1 + k_seed % n;
        let root_k = t.root_at(k as u64);
        prop_assert_eq!(root_k, ref_mth(&d[..k]));
        let c = ok(consistency_proof(&t, k as u64, n as u64)).unwrap();
        let expected = if k == n { vec![] } else { ref_subproof(k, &d, true) };
        prop_assert_eq!(&c, &expected);
        prop_assert!(verify_consistency(k as u64, n as u64, &c, &root_k, &t.root()).is_ok());
    }

    #[test]
    fn any_changed_proof_hash_fails(n in 2usize..40, m_seed in 0usize..1000, bit in 0usize..256) {
        let d = leaves(n);
        let t = tree(&d);
        let m = m_seed % n;
        let mut p = ok(inclusion_proof(&t, m as u64, n as u64)).unwrap();
        let i = bit % p.len();
        p[i][bit / 8 % 32] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(&leaf_hash(&d[m]), m as u64, n as u64, &p, &t.root()).is_err());
        let k = 1 + m_seed % (n - 1);
        let mut c = ok(consistency_proof(&t, k as u64, n as u64)).unwrap();
        let i = bit % c.len();
        c[i][bit / 8 % 32] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(k as u64, n as u64, &c, &ref_mth(&d[..k]), &t.root()).is_err());
    }
}

/// Every rejection rule of RFC 9162 §2.1.3.2 and §2.1.4.2, and the edge cases around them.
#[test]
fn rejection_rules() {
    let d = leaves(7);
    let t = tree(&d);
    let root7 = t.root();
    let leaf3 = leaf_hash(&d[3]);
    let p = ok(inclusion_proof(&t, 3, 7)).unwrap();
    verify_inclusion(&leaf3, 3, 7, &p, &root7).unwrap();
    // Inclusion step 1: index >= size.
    assert_eq!(verify_inclusion(&leaf3, 7, 7, &p, &root7), Err(ProofError::IndexOutOfRange { index: 7, size: 7 }));
    assert_eq!(verify_inclusion(&leaf3, 0, 0, &[], &root7), Err(ProofError::IndexOutOfRange { index: 0, size: 0 }));
    // Step 4a: sn reaches 0 with proof left over (too long a proof).
    let mut long = p.clone();
    long.push([0; 32]);
    assert_eq!(verify_inclusion(&leaf3, 3, 7, &long, &root7), Err(ProofError::WrongLength));
    // Step 5: sn not 0 at the end (too short), r not the root.
    assert_eq!(verify_inclusion(&leaf3, 3, 7, &p[..2], &root7), Err(ProofError::WrongLength));
    assert_eq!(verify_inclusion(&leaf_hash(b"other"), 3, 7, &p, &root7), Err(ProofError::RootMismatch));
    assert_eq!(verify_inclusion(&leaf3, 3, 7, &p, &[0; 32]), Err(ProofError::RootMismatch));
    // The right leaf and proof at the wrong index.
    assert!(verify_inclusion(&leaf3, 2, 7, &p, &root7).is_err());
    // A single-leaf tree: empty proof, root = leaf hash.
    verify_inclusion(&leaf_hash(&d[0]), 0, 1, &[], &leaf_hash(&d[0])).unwrap();

    let root3 = t.root_at(3);
    let root4 = t.root_at(4);
    let c = ok(consistency_proof(&t, 3, 7)).unwrap();
    verify_consistency(3, 7, &c, &root3, &root7).unwrap();
    // Consistency: size1 > size2.
    assert_eq!(verify_consistency(7, 3, &c, &root7, &root3), Err(ProofError::SizesOutOfOrder { size1: 7, size2: 3 }));
    // Equal sizes: empty proof and equal roots only.
    verify_consistency(7, 7, &[], &root7, &root7).unwrap();
    assert_eq!(verify_consistency(7, 7, &c, &root7, &root7), Err(ProofError::EqualSizes));
    assert_eq!(verify_consistency(7, 7, &[], &root3, &root7), Err(ProofError::EqualSizes));
    // From the empty tree: empty proof only.
    verify_consistency(0, 7, &[], &empty_root(), &root7).unwrap();
    assert_eq!(verify_consistency(0, 7, &c, &empty_root(), &root7), Err(ProofError::WrongLength));
    // Step 1: an empty path for 0 < size1 < size2.
    assert_eq!(verify_consistency(3, 7, &[], &root3, &root7), Err(ProofError::WrongLength));
    // Step 6a / 7: too long, too short.
    let mut long = c.clone();
    long.push([0; 32]);
    assert_eq!(verify_consistency(3, 7, &long, &root3, &root7), Err(ProofError::WrongLength));
    assert!(verify_consistency(3, 7, &c[..c.len() - 1], &root3, &root7).is_err());
    // Step 7: wrong old root, wrong new root.
    assert_eq!(verify_consistency(3, 7, &c, &root4, &root7), Err(ProofError::OldRootMismatch));
    assert_eq!(verify_consistency(3, 7, &c, &root3, &root4), Err(ProofError::RootMismatch));
    // Step 2: size1 a power of two (its root is prepended).
    let c4 = ok(consistency_proof(&t, 4, 7)).unwrap();
    verify_consistency(4, 7, &c4, &root4, &root7).unwrap();
    assert!(verify_consistency(4, 7, &c4, &root3, &root7).is_err());
    // Generating refuses what cannot exist.
    assert_eq!(ok(inclusion_proof(&t, 7, 7)), Err(ProofError::IndexOutOfRange { index: 7, size: 7 }));
    assert_eq!(ok(consistency_proof(&t, 5, 4)), Err(ProofError::SizesOutOfOrder { size1: 5, size2: 4 }));
}
