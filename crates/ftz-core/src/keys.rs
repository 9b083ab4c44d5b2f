//! Ed25519 keys (ring) and the key ids derived from them.
//!
//! A [`KeyId`] is the first 16 bytes of `SHA-256(0x01 || public key)`: the leading byte names the
//! algorithm, so a future algorithm can never collide with an Ed25519 id. Ids are what envelopes
//! and registries refer to; the public key itself is what verifies.

use std::{fmt, str::FromStr};

use ring::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use thiserror::Error;

pub const PUBLIC_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
pub const KEY_ID_LEN: usize = 16;
const ALG_ED25519: u8 = 0x01;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a valid Ed25519 PKCS#8 private key")]
    BadPrivateKey,
    #[error("an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, got {0}")]
    BadPublicKeyLength(usize),
    #[error("a key id is {KEY_ID_LEN} bytes ({} hex digits)", KEY_ID_LEN * 2)]
    BadKeyId,
    #[error("the system random number generator failed")]
    Rng,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    pub fn from_slice(b: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEY_ID_LEN] = b.try_into().map_err(|_| KeyError::BadKeyId)?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::BadKeyId)?;
        Self::from_slice(&bytes)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey([u8; PUBLIC_KEY_LEN]);

impl VerifyingKey {
    pub fn from_bytes(b: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; PUBLIC_KEY_LEN] = b.try_into().map_err(|_| KeyError::BadPublicKeyLength(b.len()))?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    pub fn key_id(&self) -> KeyId {
        let mut buf = [0u8; 1 + PUBLIC_KEY_LEN];
        buf[0] = ALG_ED25519;
        buf[1..].copy_from_slice(&self.0);
        let digest = crate::sha256(&buf);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// True when `sig` is a valid signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != SIGNATURE_LEN {
            return false;
        }
        let seen = verified_digest(&self.0, sig, msg);
        if VERIFIED.lock().unwrap_or_else(|e| e.into_inner()).contains(&seen) {
            return true;
        }
        let ok = UnparsedPublicKey::new(&ED25519, &self.0).verify(msg, sig).is_ok();
        if ok {
            remember(seen);
        }
        ok
    }
}

fn remember(seen: [u8; 32]) {
    let mut set = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    if set.len() >= MAX_REMEMBERED {
        set.clear();
    }
    set.insert(seen);
}

/// Valid signatures seen lately, by SHA-256 of (public key, signature, message). Ed25519
/// verification is a pure function: a triple found valid stays valid, so a node that verifies
/// the same stored record and status statement on every request (a cached credential check)
/// pays one hash instead of a 35 µs verification. Only valid results are kept; bounded (512 KiB),
/// cleared when full.
static VERIFIED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);
const MAX_REMEMBERED: usize = 16_384;

fn verified_digest(key: &[u8], sig: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(key);
    ctx.update(sig);
    ctx.update(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.key_id())
    }
}

/// An Ed25519 private key. Its `Debug` shows only the key id: private key material must never
/// reach a log.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh key and its PKCS#8 (v2) encoding, which is what gets written to a key file.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Rng)?;
        let key = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        // `maybe_unchecked` also takes PKCS#8 v1 (no embedded public key), as written by OpenSSL.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::BadPrivateKey)?;
        let public = VerifyingKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self { pair, public })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs `msg`. The signature is remembered as valid: a node checks its own signatures
    /// when they come back (a transfer intent returned with its receipt), and that check is
    /// then a hash instead of a verification.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let sig = self.pair.sign(msg);
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(sig.as_ref());
        remember(verified_digest(&self.public.0, &out, msg));
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_ids() {
        let (k, pkcs8) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(k.key_id(), again.key_id());
        let sig = k.sign(b"hello");
        assert!(k.verifying_key().verify(b"hello", &sig));
        assert!(!k.verifying_key().verify(b"hellO", &sig));
        assert!(!k.verifying_key().verify(b"hello", &sig[..63]));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!other.verifying_key().verify(b"hello", &sig));
        assert_ne!(k.key_id(), other.key_id());
    }

    #[test]
    fn remembered_valid_signatures_never_make_another_one_valid() {
        let (k, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let vk = k.verifying_key();
        let sig = k.sign(b"record");
        for _ in 0..3 {
            assert!(vk.verify(b"record", &sig), "valid, first and when remembered");
            assert!(!vk.verify(b"recorD", &sig), "another message with the remembered signature");
            assert!(!other.verifying_key().verify(b"record", &sig), "another key");
            let mut bad = sig;
            bad[10] ^= 1;
            assert!(!vk.verify(b"record", &bad), "a changed signature");
        }
        // Filling the memory past its bound clears it; answers stay right.
        for i in 0..(MAX_REMEMBERED + 10) {
            let m = (i as u64).to_be_bytes();
            assert!(vk.verify(&m, &k.sign(&m)));
        }
        assert!(VERIFIED.lock().unwrap().len() <= MAX_REMEMBERED);
        assert!(vk.verify(b"record", &sig) && !vk.verify(b"recorD", &sig));
    }

    #[test]
    fn key_id_is_sha256_of_alg_and_key() {
        // RFC 8032 test 1 public key; id computed independently with Python's hashlib:
        // sha256(b"\x01" + pk).hexdigest()[:32].
        let pk = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
        let id = VerifyingKey::from_bytes(&pk).unwrap().key_id();
        assert_eq!(id.to_string(), "bcd1d56b5845f21e54ce5b764fc1d552");
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn rejects_bad_material() {
        assert_eq!(SigningKey::from_pkcs8(b"not a key").unwrap_err(), KeyError::BadPrivateKey);
        assert_eq!(VerifyingKey::from_bytes(&[0u8; 31]).unwrap_err(), KeyError::BadPublicKeyLength(31));
        assert!("abcd".parse::<KeyId>().is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let (k, pkcs8) = SigningKey::generate().unwrap();
        let shown = format!("{k:?}");
        assert!(shown.starts_with("SigningKey("));
        assert!(!shown.contains(&hex::encode(&pkcs8[16..48])));
    }
}
