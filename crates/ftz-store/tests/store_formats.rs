//! Upgrades (issue 14, item 5): a store of each format this build opens, written by the build of
//! its time, opens and reads back exactly (`tests/fixtures/`); a store of format 1 (before any
//! release) or of a newer format is refused with what to do, and left as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/format2.rs"]
mod format2;

use std::path::{Path, PathBuf};

use ftz_store::{FORMAT_VERSION, Store, StoreError, StoreOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A copy of a fixture in a temporary directory: opening a sled store writes to it, and the
/// committed fixture must stay as it is.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join(name);
    copy_dir(&fixture(name), &to);
    (tmp, to)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_format_2_store_opens_and_reads_back_what_was_written() {
    let (_tmp, dir) = copy_of("format-2");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    format2::check(&store);
    // And keeps working: it takes writes and reads them back after a reopen.
    store.set_meta_value("opened-by", b"this build").unwrap();
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    format2::check(&store);
    assert_eq!(store.meta_value("opened-by").unwrap().as_deref(), Some(&b"this build"[..]));
}

#[test]
fn every_format_up_to_this_one_has_a_fixture_or_a_refusal() {
    // Format 1 is refused (below); every format from 2 up to this build's has a fixture.
    for version in 2..=FORMAT_VERSION {
        let dir = fixture(&format!("format-{version}"));
        assert!(dir.join("conf").exists(), "no fixture store of format {version} at {}", dir.display());
    }
}

fn refusal(found: u32) -> String {
    let (_tmp, dir) = copy_of("format-2");
    ftz_store::set_format_version_for_tests(&dir, found).unwrap();
    let err = Store::open(&dir, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Format { found: f } if f == found), "{err:?}");
    // Refused, the store is left as it was: still marked with its own version.
    let again = Store::open(&dir, StoreOptions::default()).unwrap_err();
    assert!(matches!(again, StoreError::Format { found: f } if f == found), "{again:?}");
    err.to_string()
}

#[test]
fn a_format_1_store_is_refused_with_the_way_out() {
    let msg = refusal(1);
    for part in [
        "format version 1",
        &format!("this build reads format version {FORMAT_VERSION}"),
        "no migration",
        "development builds of 2026-11-27",
        "23ba9f8",
        "ftzctl audit export --out DIR",
        "move this data directory aside",
        "empty one",
    ] {
        assert!(msg.contains(part), "{part:?} is not in: {msg}");
    }
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let msg = refusal(FORMAT_VERSION + 1);
    assert!(msg.contains(&format!("format version {}", FORMAT_VERSION + 1)), "{msg}");
    assert!(msg.contains("written by a newer build") && msg.contains("never downgraded"), "{msg}");
    let msg = refusal(0);
    assert!(msg.contains("not one any build of ftz-exchange wrote"), "{msg}");
}
