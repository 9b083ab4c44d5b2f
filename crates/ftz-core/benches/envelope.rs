//! Envelope signing and verification: what one transfer costs in cryptography (an intent and a
//! receipt, each signed once and verified once).
//!
//!   cargo bench -p ftz-core --bench envelope

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ftz_core::{SigningKey, envelope};

fn sign_verify(c: &mut Criterion) {
    let key = SigningKey::generate().unwrap().0;
    let (id, vk) = (key.key_id(), key.verifying_key());
    let payload = vec![7u8; 200]; // about the size of a transfer intent
    c.bench_function("envelope/sign", |b| {
        b.iter(|| black_box(envelope::sign("ftz.v1.TransferIntent", payload.clone(), &[&key])))
    });
    let env = envelope::sign("ftz.v1.TransferIntent", payload.clone(), &[&key]);
    c.bench_function("envelope/verify", |b| {
        b.iter(|| envelope::verify(&env, "ftz.v1.TransferIntent", |k| (*k == id).then_some(vk)).unwrap())
    });
}

criterion_group!(benches, sign_verify);
criterion_main!(benches);
