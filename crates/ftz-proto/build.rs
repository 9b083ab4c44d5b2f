//! Generates the ftz.v1 messages and services from `proto/`. protoc comes from
//! `protoc-bin-vendored`, so a fresh machine needs nothing installed.

use std::{env, path::PathBuf};

const FILES: &[&str] = &[
    "ftz/v1/envelope.proto",
    "ftz/v1/registry.proto",
    "ftz/v1/zone.proto",
    "ftz/v1/records.proto",
    "ftz/v1/agreement.proto",
    "ftz/v1/policy.proto",
    "ftz/v1/data.proto",
    "ftz/v1/transfer.proto",
    "ftz/v1/peer.proto",
    "ftz/v1/admin.proto",
    "ftz/v1/issuer.proto",
    "ftz/v1/verify.proto",
    "ftz/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let paths: Vec<PathBuf> = FILES.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let descriptor = PathBuf::from(env::var("OUT_DIR")?).join("ftz_v1_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(&descriptor).compile_with_config(
        config,
        &paths,
        &[root],
    )?;
    Ok(())
}
