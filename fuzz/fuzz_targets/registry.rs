//! Federation registry parsing: any bytes as a signed registry. Must never panic; a registry
//! that parses must re-encode to the bytes of its envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reg) = ftz_core::Registry::from_bytes(data) {
        let _ = reg.zones().count();
        let _ = reg.valid_at(0);
        let again = ftz_core::Registry::from_bytes(&reg.to_bytes()).expect("a parsed registry parses again");
        assert_eq!(again.digest(), reg.digest());
    }
});
