//! C2SP signed notes, checkpoints, tlog-proofs and vkeys: any text. Must never panic; what
//! parses must print back to the same text (the formats are canonical).
#![no_main]

use ftz_audit::{
    checkpoint::{Checkpoint, TlogProof},
    note::{Note, Verifier},
    offline::KeyRing,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(note) = Note::parse(text) {
        assert_eq!(note.to_text(), text, "a note prints back as it was");
        let v = Verifier::from_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
        if let Ok(v) = v {
            let _ = note.verify(std::slice::from_ref(&v));
        }
        if let Ok(cp) = Checkpoint::parse(&note.text) {
            assert_eq!(cp.to_text(), note.text);
        }
    }
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(cp.to_text(), text);
    }
    if let Ok(p) = TlogProof::parse(text) {
        let _ = p.to_text();
    }
    let _ = Verifier::from_vkey(text);
    let _ = KeyRing::parse(text);
});
