//! Ed25519 keys (ring) and the key ids derived from them.
//!
//! A [`KeyId`] is the first 16 bytes of `SHA-256(0x01 || public key)`: the leading byte names the
//! algorithm, so a future algorithm can never collide with an Ed25519 id. Ids are what envelopes
//! and registries refer to; the public key itself is what verifies.

use std::{fmt, str::FromStr};

use ring::{
    rand::{SecureRandom, SystemRandom},
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

/// The DER of a PKCS#8 v1 Ed25519 private key (RFC 8410, section 7) up to the seed:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`.
pub const PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// The PKCS#8 v1 document (48 bytes) of an Ed25519 seed.
fn pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(PKCS8_V1_PREFIX.len() + seed.len());
    der.extend_from_slice(&PKCS8_V1_PREFIX);
    der.extend_from_slice(seed);
    der
}

/// An Ed25519 private key. Its `Debug` shows only the key id: private key material must never
/// reach a log.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh key and its PKCS#8 v1 encoding (RFC 8410), which is what gets written to a key
    /// file.
    ///
    /// Why v1 and not ring's own `generate_pkcs8` (v2, RFC 5958, with the public key embedded):
    /// OpenSSL 3 and Python's `cryptography` refuse ring's v2 documents ("extra data"), so an
    /// operator could neither inspect nor move a key with standard tools. The v1 form is the
    /// one `openssl genpkey -algorithm ed25519` writes: 48 bytes, [`PKCS8_V1_PREFIX`] and the
    /// 32-byte seed. The public key is derived from the seed when the file is loaded.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).map_err(|_| KeyError::Rng)?;
        let pkcs8 = pkcs8_v1(&seed);
        seed.fill(0);
        let key = Self::from_pkcs8(&pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Loads an Ed25519 private key from PKCS#8 DER: v1 (RFC 8410, as OpenSSL, Python's
    /// `cryptography` and this crate write it) or v2 (RFC 5958 with the public key, as ring wrote
    /// it for key files made before v1 was used). A v2 document whose public key does not match
    /// its seed is refused.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        // `maybe_unchecked` takes v1 (no embedded public key) as well as v2; for v2 it still
        // checks the embedded public key against the one derived from the seed.
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

    /// RFC 8032, section 7.1, test 1: seed and public key.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn generated_keys_are_pkcs8_v1_of_48_bytes() {
        let (k, pkcs8) = SigningKey::generate().unwrap();
        assert_eq!(pkcs8.len(), 48);
        assert_eq!(pkcs8[..16], PKCS8_V1_PREFIX);
        assert_eq!(SigningKey::from_pkcs8(&pkcs8).unwrap().verifying_key(), k.verifying_key());
        let (_, other) = SigningKey::generate().unwrap();
        assert_ne!(pkcs8[16..], other[16..], "fresh seeds");
    }

    #[test]
    fn v1_of_a_known_seed_gives_its_public_key() {
        let seed: [u8; 32] = hex::decode(RFC8032_SEED).unwrap().try_into().unwrap();
        let k = SigningKey::from_pkcs8(&pkcs8_v1(&seed)).unwrap();
        assert_eq!(hex::encode(k.verifying_key().as_bytes()), RFC8032_PUBLIC);
        // RFC 8032 test 1: the signature of the empty message.
        assert_eq!(
            hex::encode(k.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn ring_v2_documents_still_load_and_a_wrong_embedded_public_key_is_refused() {
        // Key files written before v1 hold what ring's `generate_pkcs8` returns.
        let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let v2 = v2.as_ref();
        assert_ne!(v2.len(), 48, "ring writes v2");
        // The layout ftz-pki's test of old key files copies: prefix, seed, [1] public key.
        assert_eq!(hex::encode(&v2[..16]), "3051020101300506032b657004220420");
        assert_eq!(hex::encode(&v2[48..51]), "812100");
        assert_eq!(v2.len(), 83);
        let k = SigningKey::from_pkcs8(v2).unwrap();
        let ring_pair = Ed25519KeyPair::from_pkcs8(v2).unwrap();
        assert_eq!(k.verifying_key().as_bytes(), ring_pair.public_key().as_ref());
        // The same seed as v1 is the same key.
        let seed: [u8; 32] = v2[16..48].try_into().unwrap();
        assert_eq!(SigningKey::from_pkcs8(&pkcs8_v1(&seed)).unwrap().key_id(), k.key_id());
        // A v2 document whose embedded public key was changed is not a key.
        let mut bad = v2.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(SigningKey::from_pkcs8(&bad).unwrap_err(), KeyError::BadPrivateKey);
        // Nor is a truncated v1.
        assert_eq!(SigningKey::from_pkcs8(&pkcs8_v1(&seed)[..47]).unwrap_err(), KeyError::BadPrivateKey);
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
        let pk = hex::decode(RFC8032_PUBLIC).unwrap();
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
