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

// Known answers: transparency-dev/merkle testonly/constants.go (the leaves, roots 0..8),
// proof/verify_test.go and testdata (inclusion I0-I4, consistency C0-C4),
// testonly/reference_test.go (R1, R2), rfc6962/rfc6962_test.go (hasher); the same values are
// in google/certificate-transparency cpp/merkletree/merkle_tree_test.cc.

const KAT_LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

const KAT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn kat_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in KAT_LEAVES {
        t.push(&hex::decode(l).unwrap());
    }
    t
}

#[test]
fn known_roots_for_sizes_0_to_8() {
    let t = kat_tree();
    for (size, r) in KAT_ROOTS.iter().enumerate() {
        assert_eq!(t.root_at(size as u64), h(r), "size {size}");
    }
}

#[test]
fn known_hasher_values() {
    assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(leaf_hash(b""), h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"));
    assert_eq!(leaf_hash(b"L123456"), h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"));
    // The node vector hashes two 4-byte strings, so it goes through the raw hash.
    assert_eq!(
        sha256(&[&[0x01], b"N123", b"N456"]),
        h("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
    );
    let (a, b) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
    assert_ne!(a, b);
    assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    assert_ne!(node_hash(&a, &b), leaf_hash(&[a, b].concat()));
}

#[test]
fn known_inclusion_proofs() {
    let t = kat_tree();
    let cases: [(u64, u64, &[&str]); 7] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (0, 2, &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
        (1, 2, &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    ];
    for (index, size, proof) in cases {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(ok(inclusion_proof(&t, index, size)).unwrap(), want, "({index}, {size})");
        let leaf = leaf_hash(&hex::decode(KAT_LEAVES[index as usize]).unwrap());
        let root = h(KAT_ROOTS[size as usize]);
        verify_inclusion(&leaf, index, size, &want, &root).unwrap();
        // transparency-dev's mutations of each vector all fail.
        let mutated: Vec<(u64, u64, Vec<Hash>, Hash)> = vec![
            (index.wrapping_sub(1), size, want.clone(), root),
            (index + 1, size, want.clone(), root),
            (index ^ 2, size, want.clone(), root),
            (index, size * 2, want.clone(), root),
            (index, size / 2, want.clone(), root),
            (index, size, want.clone(), empty_root()),
            (index, size, [want.clone(), vec![root]].concat(), root),
            (index, size, [vec![root], want.clone()].concat(), root),
        ];
        for (i, s, p, r) in mutated {
            if (i, s, &p, r) == (index, size, &want, root) {
                continue;
            }
            assert!(verify_inclusion(&leaf, i, s, &p, &r).is_err(), "({index},{size}) mutated to ({i},{s})");
        }
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 8;
            assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
        }
        assert!(verify_inclusion(&leaf_hash(b"WrongLeaf"), index, size, &want, &root).is_err());
    }
}

#[test]
fn known_consistency_proofs() {
    let t = kat_tree();
    let cases: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (s1, s2, proof) in cases {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(ok(consistency_proof(&t, s1, s2)).unwrap(), want, "({s1}, {s2})");
        let (r1, r2) = (h(KAT_ROOTS[s1 as usize]), h(KAT_ROOTS[s2 as usize]));
        verify_consistency(s1, s2, &want, &r1, &r2).unwrap();
        if s1 == s2 {
            continue;
        }
        // transparency-dev's mutations (proof/verify_test.go corruptConsistencyProof).
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 16;
            assert!(verify_consistency(s1, s2, &p, &r1, &r2).is_err());
        }
        let wrong = leaf_hash(b"WrongRoot");
        let bad: Vec<(u64, u64, Vec<Hash>, Hash, Hash)> = vec![
            (s1 - 1, s2, want.clone(), r1, r2),
            (s1 + 1, s2, want.clone(), r1, r2),
            (s1 ^ 2, s2, want.clone(), r1, r2),
            (s1, s2 * 2, want.clone(), r1, r2),
            (s1, s2 / 2, want.clone(), r1, r2),
            (s1, s2, want.clone(), wrong, r2),
            (s1, s2, want.clone(), r1, wrong),
            (s1, s2, want.clone(), r2, r1),
            (s1, s2, vec![], r1, r2),
            (s1, s2, [want.clone(), vec![r1]].concat(), r1, r2),
            (s1, s2, [want.clone(), vec![r2]].concat(), r1, r2),
            (s1, s2, [vec![r1], want.clone()].concat(), r1, r2),
            (s1, s2, [vec![r2], want.clone()].concat(), r1, r2),
            (s1, s2, [vec![want[0]], want.clone()].concat(), r1, r2),
            (s1, s2, want[..want.len() - 1].to_vec(), r1, r2),
        ];
        for (a, b, p, x, y) in bad {
            assert!(verify_consistency(a, b, &p, &x, &y).is_err(), "({s1},{s2}) mutated to ({a},{b}) len {}", p.len());
        }
    }
}
