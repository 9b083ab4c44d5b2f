//! The vocabulary of ftz-exchange: zone ids and identities, Ed25519 keys and key ids, signed
//! envelopes, the federation registry and its install rules, reason codes, clocks.
//!
//! Pure: no I/O, no async, so everything here tests without a runtime. File handling lives in
//! `ftz-pki`, storage in `ftz-store`, the network in `ftz-node`.

#![forbid(unsafe_code)]

pub mod envelope;
pub mod identity;
pub mod keys;
pub mod pem;
pub mod reason;
pub mod records;
pub mod registry;
pub mod time;

pub use envelope::{EnvelopeError, PayloadType};
pub use identity::{Identity, Principal, Role, ZoneId};
pub use keys::{KeyError, KeyId, SigningKey, VerifyingKey};
pub use reason::{Reason, Refusal};
pub use registry::{Registry, RegistryError};
pub use time::{Clock, ManualClock, SystemClock, UnixMillis};

/// SHA-256 of `data`, the one digest the project uses.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
