//! A store of a format this build does not read (issue 14, item 5): `ftz-node --check` and a
//! start both refuse it with the store's message (the version found, the one this build reads,
//! what to do), exit non-zero, and leave the store as it was. The store side is tested in
//! ftz-store's `tests/store_formats.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use ftz_devkit::dev::DevFederation;
use ftz_store::{Store, StoreError, StoreOptions};

fn federation(root: &Path) -> DevFederation {
    common::federation(root, "ftz-format-test", &["shanghai", "hainan"], false)
}

/// Runs ftz-node on shanghai's config with `args`; (exit code, stderr and stdout). A node that
/// does not exit within a minute is killed and the test fails.
fn run_node(fed: &DevFederation, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftz-node"))
        .arg("--config")
        .arg(&fed.zone("shanghai").unwrap().config_path)
        .args(args)
        .env_remove("RUST_LOG")
        .env("FTZ_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("ftz-node {args:?} did not exit: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_format_1_store_is_refused_by_check_and_start_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let data = fed.zone("shanghai").unwrap().data_dir();
    std::fs::create_dir_all(&data).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    drop(Store::open(&data, StoreOptions::default()).unwrap());
    ftz_store::set_format_version_for_tests(&data, 1).unwrap();

    for args in [&["--check"][..], &[][..]] {
        let (code, out) = run_node(&fed, args);
        assert_ne!(code, 0, "ftz-node {args:?} accepted a format-1 store: {out}");
        for part in ["format version 1", "this build reads format version 2", "ftzctl audit export", "empty one"] {
            assert!(out.contains(part), "ftz-node {args:?}: {part:?} is not in: {out}");
        }
    }
    // Still format 1: neither changed it.
    let err = Store::open(&data, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Format { found: 1 }), "{err:?}");
}
