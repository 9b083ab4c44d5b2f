//! Signed notes against the public example of golang.org/x/mod/sumdb/note and the edge cases
//! its tests exercise.

use super::*;

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str =
    "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
/// The Ed25519 seed of PeterNeumann's key (from the Go example's PRIVATE+KEY string).
const PETER_SEED: &str = "810a1402d5146c8d84f2443330f54080ebf98ee17d9c74f6252fc5d5c7283173";

#[test]
fn the_go_example_verifies() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    assert_eq!((peter.id, peter.to_vkey()), (0xc74f20a3, PETER_VKEY.to_string()));
    let msg = format!("{TEXT}\n{PETER_SIG}");
    let note = Note::parse(&msg).unwrap();
    assert_eq!(note.text, TEXT);
    let signed = note.verify(std::slice::from_ref(&peter)).unwrap();
    assert_eq!(signed, vec![&peter]);
    assert_eq!(note.to_text(), msg, "round trip is byte-exact");
}

#[test]
fn signing_reproduces_the_go_example_byte_for_byte() {
    // PKCS#8 v1 for the seed: the fixed Ed25519 prefix, then the 32 seed bytes.
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap();
    pkcs8.extend(hex::decode(PETER_SEED).unwrap());
    let key = SigningKey::from_pkcs8(&pkcs8).unwrap();
    let signer = Signer::new("PeterNeumann", TYPE_ED25519, &key).unwrap();
    assert_eq!(signer.verifier.to_vkey(), PETER_VKEY);
    assert_eq!(sign(TEXT, &signer).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn unknown_keys_are_ignored_and_known_bad_signatures_reject() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    let enoch = Verifier::from_vkey(ENOCH_VKEY).unwrap();
    let both = Note::parse(&format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}")).unwrap();
    assert_eq!(both.verify(std::slice::from_ref(&peter)).unwrap().len(), 1);
    assert_eq!(both.verify(&[peter.clone(), enoch.clone()]).unwrap().len(), 2);
    assert_eq!(both.verify(&[]).unwrap_err(), NoteError::Unverified);
    // Same name, other key id: unknown, ignored.
    let impostor =
        Verifier::new("PeterNeumann", TYPE_ED25519, SigningKey::generate().unwrap().0.verifying_key()).unwrap();
    assert_eq!(both.verify(std::slice::from_ref(&impostor)).unwrap_err(), NoteError::Unverified);
    // A known key whose signature fails rejects the whole note.
    let mut sig = PETER_SIG.to_string();
    sig.insert_str(60, "ABCD");
    let tampered = Note::parse(&format!("{TEXT}\n{sig}{ENOCH_SIG}")).unwrap();
    assert!(
        matches!(tampered.verify(&[peter.clone(), enoch]), Err(NoteError::InvalidSignature(k)) if k == "PeterNeumann+c74f20a3")
    );
    // A changed text fails too.
    let changed = Note::parse(&format!("{}\n{PETER_SIG}", TEXT.replace("problem,", "problems,"))).unwrap();
    assert!(changed.verify(&[peter]).is_err());
}

#[test]
fn malformed_notes_and_keys() {
    let no_newline = &PETER_SIG[..PETER_SIG.len() - 1];
    for bad in [
        TEXT.to_string(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{no_newline}"),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
        format!("{TEXT}\n{}", "x".repeat(MAX_NOTE_BYTES)),
    ] {
        assert!(
            matches!(Note::parse(&bad), Err(NoteError::Malformed(_))),
            "{:?}",
            bad.chars().take(80).collect::<String>()
        );
    }
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
    ] {
        assert!(Verifier::from_vkey(bad).is_err(), "{bad}");
    }
    // Every proper prefix of the key is refused.
    for i in 0..PETER_VKEY.len() {
        assert!(Verifier::from_vkey(&PETER_VKEY[..i]).is_err(), "prefix {i}");
    }
}

#[test]
fn cosignatures_sign_header_time_and_text() {
    let (key, _) = SigningKey::generate().unwrap();
    let witness = Signer::new("ftz/hainan/witness", TYPE_COSIGNATURE, &key).unwrap();
    let text = "ftz/shanghai/audit\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let line = witness.cosign(1_679_315_147, text);
    assert_eq!(line.timestamp(), Some(1_679_315_147));
    assert_eq!(line.body.len(), 72);
    let note = Note { text: text.into(), signatures: vec![line] };
    assert_eq!(note.verify(std::slice::from_ref(&witness.verifier)).unwrap().len(), 1);
    // The same key as a plain signer has another key id: the cosignature is not taken for one.
    let plain = Verifier::new("ftz/hainan/witness", TYPE_ED25519, key.verifying_key()).unwrap();
    assert_ne!(plain.id, witness.verifier.id);
    assert_eq!(note.verify(&[plain]).unwrap_err(), NoteError::Unverified);
    // The message is exactly as the spec gives it.
    assert_eq!(cosigned_message(1_679_315_147, text), format!("cosignature/v1\ntime 1679315147\n{text}"));
}
