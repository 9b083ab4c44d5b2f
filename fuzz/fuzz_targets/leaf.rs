//! Audit leaf decoding: any bytes. Must never panic; a leaf that decodes must encode back to
//! exactly the same bytes (the encoding is canonical, which two-sided logging relies on).
#![no_main]

use ftz_audit::{entry::describe, leaf::Leaf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = Leaf::decode(data) {
        assert_eq!(leaf.encode(), data, "decode then encode changed the bytes");
        let _ = describe(data);
    }
});
