//! Writes the store fixture of the current format (see `tests/fixtures/README.md`):
//!
//! ```sh
//! cargo run -p ftz-store --example write-store-fixture -- crates/ftz-store/tests/fixtures/format-2
//! ```
//!
//! The directory must not exist yet. Run it only when a new format is introduced (with a new
//! contents module): a committed fixture is what an older build wrote, and stays as it is.

#![forbid(unsafe_code)]

#[path = "../tests/fixtures/format2.rs"]
mod format2;

use ftz_store::{FORMAT_VERSION, Store, StoreOptions};

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: write-store-fixture DIR (a directory that does not exist yet)");
        std::process::exit(2);
    };
    if dir.exists() {
        eprintln!("{} exists: a committed fixture is never rewritten", dir.display());
        std::process::exit(1);
    }
    assert_eq!(FORMAT_VERSION, 2, "this build writes format {FORMAT_VERSION}: add a contents module for it");
    let store = Store::open(&dir, StoreOptions::default()).expect("a new store");
    format2::write(&store);
    format2::check(&store);
    drop(store);
    // Reopened, it still reads back, so what is committed is complete.
    format2::check(&Store::open(&dir, StoreOptions::default()).expect("the store again"));
    println!("wrote a format-{FORMAT_VERSION} store to {}", dir.display());
}
