//! Signed envelopes in the style of DSSE.
//!
//! A signature covers the DSSE pre-authentication encoding of the payload type and the exact
//! payload bytes. Nothing is ever re-encoded before verifying, so protobuf's freedom in encoding
//! cannot break a signature, and the type is bound so that bytes signed as one kind of document
//! can never be accepted as another.

use std::collections::HashSet;

use ftz_proto::{Envelope, Signature};
use prost::Message;
use thiserror::Error;

use crate::{
    Reason,
    keys::{KEY_ID_LEN, KeyId, SIGNATURE_LEN, SigningKey, VerifyingKey},
};

/// The versioned payload types this project signs.
pub struct PayloadType;

impl PayloadType {
    pub const FEDERATION_REGISTRY: &'static str = "ftz.v1.FederationRegistry";
    pub const PING_CHALLENGE: &'static str = "ftz.v1.PingChallenge";
    pub const PING_ANSWER: &'static str = "ftz.v1.PingAnswer";
    pub const CERTIFICATION: &'static str = "ftz.v1.Certification";
    pub const INSPECTION_RESULT: &'static str = "ftz.v1.InspectionResult";
    pub const REVOCATION: &'static str = "ftz.v1.Revocation";
    pub const STATUS_STATEMENT: &'static str = "ftz.v1.StatusStatement";
    pub const RECOGNITION_AGREEMENT: &'static str = "ftz.v1.RecognitionAgreement";
    pub const VERIFICATION_BUNDLE: &'static str = "ftz.v1.VerificationBundle";
    pub const EXCHANGE_POLICY: &'static str = "ftz.v1.ExchangePolicy";
    pub const POLICY_REVOCATION: &'static str = "ftz.v1.PolicyRevocation";
    pub const EXPORT_NEGATIVE_LIST: &'static str = "ftz.v1.ExportNegativeList";
    pub const USER_CERTIFICATE_REVOCATIONS: &'static str = "ftz.v1.UserCertificateRevocations";
    pub const TRANSFER_INTENT: &'static str = "ftz.v1.TransferIntent";
    pub const TRANSFER_RECEIPT: &'static str = "ftz.v1.TransferReceipt";
}

/// More signatures than any document needs is a resource attack, not a document.
pub const MAX_SIGNATURES: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("payload type is {found:?}, expected {expected:?}")]
    WrongPayloadType { expected: String, found: String },
    #[error("the envelope carries no signature")]
    Unsigned,
    #[error("the envelope carries {0} signatures, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures(usize),
    #[error("signature {index} is malformed: key id must be {KEY_ID_LEN} bytes and signature {SIGNATURE_LEN}")]
    MalformedSignature { index: usize },
    #[error("key {0} signed more than once")]
    DuplicateSignature(KeyId),
    #[error("the signature by key {0} does not verify")]
    BadSignature(KeyId),
    #[error("no signature is by a key trusted here")]
    NoTrustedSignature,
    #[error("payload does not decode as {payload_type}: {detail}")]
    MalformedPayload { payload_type: String, detail: String },
}

impl EnvelopeError {
    pub fn reason(&self) -> Reason {
        match self {
            EnvelopeError::WrongPayloadType { .. } => Reason::WrongPayloadType,
            EnvelopeError::Unsigned | EnvelopeError::NoTrustedSignature => Reason::NoTrustedSignature,
            EnvelopeError::TooManySignatures(_) | EnvelopeError::MalformedSignature { .. } => {
                Reason::MalformedSignature
            }
            EnvelopeError::DuplicateSignature(_) => Reason::DuplicateSignature,
            EnvelopeError::BadSignature(_) => Reason::BadSignature,
            EnvelopeError::MalformedPayload { .. } => Reason::MalformedPayload,
        }
    }
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` as `payload_type` with every key given.
pub fn sign(payload_type: &str, payload: Vec<u8>, keys: &[&SigningKey]) -> Envelope {
    let mut env = Envelope { payload_type: payload_type.to_string(), payload, signatures: Vec::new() };
    for k in keys {
        add_signature(&mut env, k);
    }
    env
}

/// Encodes `msg` and signs it.
pub fn seal<M: Message>(payload_type: &str, msg: &M, keys: &[&SigningKey]) -> Envelope {
    sign(payload_type, msg.encode_to_vec(), keys)
}

/// Adds (or replaces) the signature of `key`: how several authorities co-sign one document,
/// each on their own machine.
pub fn add_signature(env: &mut Envelope, key: &SigningKey) {
    let id = key.key_id();
    env.signatures.retain(|s| s.key_id != id.as_bytes());
    let sig = key.sign(&pae(&env.payload_type, &env.payload));
    env.signatures.push(Signature { key_id: id.as_bytes().to_vec(), sig: sig.to_vec() });
}

/// Verifies the envelope against the keys `trusted` knows and returns the ids of the keys whose
/// signatures verified, in envelope order.
///
/// Rules, in order: the payload type must be the expected one; there is at least one and at most
/// [`MAX_SIGNATURES`] signatures; each is well-formed; no key signs twice; a signature by a key
/// `trusted` knows must verify, or the whole envelope is refused (a forged co-signature is an
/// attack, not noise); signatures by unknown keys are ignored; at least one must remain.
pub fn verify<F>(env: &Envelope, expected_type: &str, trusted: F) -> Result<Vec<KeyId>, EnvelopeError>
where
    F: Fn(&KeyId) -> Option<VerifyingKey>,
{
    if env.payload_type != expected_type {
        return Err(EnvelopeError::WrongPayloadType {
            expected: expected_type.to_string(),
            found: env.payload_type.chars().take(100).collect(),
        });
    }
    if env.signatures.is_empty() {
        return Err(EnvelopeError::Unsigned);
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(EnvelopeError::TooManySignatures(env.signatures.len()));
    }
    let mut seen = HashSet::with_capacity(env.signatures.len());
    let mut parsed = Vec::with_capacity(env.signatures.len());
    for (index, s) in env.signatures.iter().enumerate() {
        let id = KeyId::from_slice(&s.key_id).map_err(|_| EnvelopeError::MalformedSignature { index })?;
        if s.sig.len() != SIGNATURE_LEN {
            return Err(EnvelopeError::MalformedSignature { index });
        }
        if !seen.insert(id) {
            return Err(EnvelopeError::DuplicateSignature(id));
        }
        parsed.push((id, &s.sig));
    }
    let message = pae(&env.payload_type, &env.payload);
    let mut verified = Vec::new();
    for (id, sig) in parsed {
        if let Some(key) = trusted(&id) {
            // A key id is a hash of the key; a lookup that returns another key is a bug upstream
            // and must not let a signature count.
            if key.key_id() != id || !key.verify(&message, sig) {
                return Err(EnvelopeError::BadSignature(id));
            }
            verified.push(id);
        }
    }
    if verified.is_empty() {
        return Err(EnvelopeError::NoTrustedSignature);
    }
    Ok(verified)
}

/// Verifies, then decodes the payload as `M`.
pub fn open<M, F>(env: &Envelope, expected_type: &str, trusted: F) -> Result<(M, Vec<KeyId>), EnvelopeError>
where
    M: Message + Default,
    F: Fn(&KeyId) -> Option<VerifyingKey>,
{
    let signers = verify(env, expected_type, trusted)?;
    let msg = decode_payload(env, expected_type)?;
    Ok((msg, signers))
}

/// Decodes the payload without checking signatures: for reading a document before deciding
/// which keys may sign it (a registry names its own signers).
pub fn decode_payload<M: Message + Default>(env: &Envelope, expected_type: &str) -> Result<M, EnvelopeError> {
    if env.payload_type != expected_type {
        return Err(EnvelopeError::WrongPayloadType {
            expected: expected_type.to_string(),
            found: env.payload_type.chars().take(100).collect(),
        });
    }
    M::decode(env.payload.as_slice())
        .map_err(|e| EnvelopeError::MalformedPayload { payload_type: expected_type.to_string(), detail: e.to_string() })
}

impl crate::Refusal for EnvelopeError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "ftz.v1.Test";

    fn keys(n: usize) -> Vec<SigningKey> {
        (0..n).map(|_| SigningKey::generate().unwrap().0).collect()
    }

    fn lookup(keys: &[SigningKey]) -> impl Fn(&KeyId) -> Option<VerifyingKey> + '_ {
        move |id| keys.iter().find(|k| k.key_id() == *id).map(|k| k.verifying_key())
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn good_envelope_verifies_with_every_signer() {
        let ks = keys(2);
        let env = sign(T, b"payload".to_vec(), &[&ks[0], &ks[1]]);
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap(), vec![ks[0].key_id(), ks[1].key_id()]);
    }

    #[test]
    fn changed_payload_byte_is_rejected() {
        let ks = keys(1);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        env.payload[3] ^= 0x01;
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::BadSignature(ks[0].key_id()));
    }

    #[test]
    fn changed_payload_type_is_rejected() {
        let ks = keys(1);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        env.payload_type = "ftz.v1.Other".into();
        // Refused as the wrong type where a test document is expected ...
        assert!(matches!(verify(&env, T, lookup(&ks)), Err(EnvelopeError::WrongPayloadType { .. })));
        // ... and its signature fails where the other type is expected.
        assert_eq!(verify(&env, "ftz.v1.Other", lookup(&ks)).unwrap_err(), EnvelopeError::BadSignature(ks[0].key_id()));
    }

    #[test]
    fn wrong_key_is_rejected() {
        let ks = keys(2);
        let env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        // Only ks[1] is trusted: the signature by ks[0] does not count.
        assert_eq!(verify(&env, T, lookup(&ks[1..])).unwrap_err(), EnvelopeError::NoTrustedSignature);
        // A signature relabelled with a trusted key's id fails outright.
        let mut forged = env.clone();
        forged.signatures[0].key_id = ks[1].key_id().as_bytes().to_vec();
        assert_eq!(verify(&forged, T, lookup(&ks)).unwrap_err(), EnvelopeError::BadSignature(ks[1].key_id()));
    }

    #[test]
    fn truncated_signature_is_rejected() {
        let ks = keys(1);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        env.signatures[0].sig.pop();
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::MalformedSignature { index: 0 });
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        env.signatures[0].key_id.truncate(8);
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::MalformedSignature { index: 0 });
    }

    #[test]
    fn duplicated_signature_is_rejected() {
        let ks = keys(1);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        let dup = env.signatures[0].clone();
        env.signatures.push(dup);
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::DuplicateSignature(ks[0].key_id()));
    }

    #[test]
    fn unsigned_and_oversigned_are_rejected() {
        let ks = keys(1);
        let env = sign(T, b"payload".to_vec(), &[]);
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::Unsigned);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        let s = env.signatures[0].clone();
        env.signatures = vec![s; MAX_SIGNATURES + 1];
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap_err(), EnvelopeError::TooManySignatures(MAX_SIGNATURES + 1));
    }

    #[test]
    fn add_signature_replaces_own_earlier_signature() {
        let ks = keys(2);
        let mut env = sign(T, b"payload".to_vec(), &[&ks[0]]);
        add_signature(&mut env, &ks[1]);
        add_signature(&mut env, &ks[0]);
        assert_eq!(env.signatures.len(), 2);
        assert_eq!(verify(&env, T, lookup(&ks)).unwrap().len(), 2);
    }

    #[test]
    fn open_decodes_typed_payloads() {
        let ks = keys(1);
        let msg = ftz_proto::PingChallenge { from_zone: "a".into(), ..Default::default() };
        let env = seal(PayloadType::PING_CHALLENGE, &msg, &[&ks[0]]);
        let (back, _): (ftz_proto::PingChallenge, _) = open(&env, PayloadType::PING_CHALLENGE, lookup(&ks)).unwrap();
        assert_eq!(back, msg);
        let bad = sign(PayloadType::PING_CHALLENGE, vec![0xff, 0xff, 0xff], &[&ks[0]]);
        let err = open::<ftz_proto::PingChallenge, _>(&bad, PayloadType::PING_CHALLENGE, lookup(&ks)).unwrap_err();
        assert_eq!(err.reason(), Reason::MalformedPayload);
    }
}
