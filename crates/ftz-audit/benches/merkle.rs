//! Merkle proofs and leaves: inclusion proof generation and verification at 10k, 100k and 1M
//! entries (targets at 1M: made in at most 20 µs, verified in at most 10 µs; issue 7), and
//! leaf encoding and decoding.
//!
//!   cargo bench -p ftz-audit --bench merkle

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ftz_audit::{
    leaf::{Leaf, LeafSignature, SignedPart},
    merkle::{MemoryTree, inclusion_proof, leaf_hash, verify_inclusion},
};

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(&i.to_be_bytes());
    }
    t
}

fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("inclusion_proof");
    for n in [10_000u64, 100_000, 1_000_000] {
        let t = tree(n);
        let root = t.root();
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::new("make", n), &n, |b, &n| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(inclusion_proof(&t, i, n).unwrap().unwrap())
            })
        });
        let samples: Vec<(u64, Vec<[u8; 32]>)> =
            (0..64).map(|k| (k * (n / 64), inclusion_proof(&t, k * (n / 64), n).unwrap().unwrap())).collect();
        let mut k = 0;
        g.bench_with_input(BenchmarkId::new("verify", n), &n, |b, &n| {
            b.iter(|| {
                k = (k + 1) % samples.len();
                let (i, p) = &samples[k];
                verify_inclusion(&leaf_hash(&i.to_be_bytes()), *i, n, p, &root).unwrap()
            })
        });
    }
    g.finish();
}

fn leaves(c: &mut Criterion) {
    let part = |n: u8| SignedPart { payload: vec![n; 180], signature: LeafSignature { key_id: [n; 16], sig: [n; 64] } };
    let leaf = Leaf::Transfer { intent: part(1), receipt: part(2) };
    let bytes = leaf.encode();
    c.bench_function("leaf/encode_transfer", |b| b.iter(|| black_box(leaf.encode())));
    c.bench_function("leaf/decode_transfer", |b| b.iter(|| black_box(Leaf::decode(&bytes).unwrap())));
}

criterion_group!(benches, proofs, leaves);
criterion_main!(benches);
