//! Audit log leaves: a versioned, deterministic binary encoding (docs/audit-leaves.md has it
//! byte by byte). Leaves hold hashes and metadata, never payloads. The same transfer gives the
//! byte-identical leaf in both zones' logs, because it is built from the same two signed
//! messages (the provider's intent and the consumer's receipt), copied verbatim.

use thiserror::Error;

pub const VERSION: u8 = 1;
pub const MAX_LEAF_BYTES: usize = 64 * 1024;

pub const KIND_TRANSFER: u8 = 1;
pub const KIND_REFUSAL: u8 = 2;
pub const KIND_UNACKNOWLEDGED: u8 = 3;
pub const KIND_CONFIG: u8 = 4;
pub const KIND_DELETION: u8 = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LeafError {
    #[error("malformed leaf: {0}")]
    Malformed(String),
}

fn bad(m: impl Into<String>) -> LeafError {
    LeafError::Malformed(m.into())
}

/// A signature as a leaf holds it: the 16-byte key id and the 64-byte Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSignature {
    pub key_id: [u8; 16],
    pub sig: [u8; 64],
}

/// A signed message as a leaf holds it: the exact payload bytes and one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPart {
    pub payload: Vec<u8>,
    pub signature: LeafSignature,
}

/// Who refused whom, as the zone that logs a refusal sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusing {
    /// The other zone's node refused this zone's node (byte 0).
    RefusedByPeer = 0,
    /// This zone's node refused the other zone's node (byte 1).
    RefusedPeer = 1,
    /// This zone's node refused a user (or another non-node caller) of the other zone (byte 2):
    /// no node of that zone took part, so its log has no matching entry.
    RefusedUser = 2,
}

impl Refusing {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::RefusedByPeer),
            1 => Some(Self::RefusedPeer),
            2 => Some(Self::RefusedUser),
            _ => None,
        }
    }

    /// Whether this zone did the refusing.
    pub fn by_us(self) -> bool {
        self != Self::RefusedByPeer
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A transfer both sides signed: the provider's intent and the consumer's receipt.
    Transfer { intent: SignedPart, receipt: SignedPart },
    /// A refusal: by this zone of a node or user of `other_zone`, or of this zone by
    /// `other_zone` (see [`Refusing`]).
    Refusal {
        at_ms: i64,
        zone: String,
        other_zone: String,
        refusing: Refusing,
        reason: String,
        method: String,
        data_class: String,
        policy_id: String,
        subject_digest: [u8; 32],
    },
    /// An intent whose receipt did not arrive in time.
    Unacknowledged { intent: SignedPart, declared_at_ms: i64 },
    /// Something installed on the node: registry, agreement, policy, policy revocation,
    /// negative list, node key.
    Config { at_ms: i64, what: String, id: String, version: u64, digest: [u8; 32] },
    /// Received data deleted when its retention was up.
    Deletion { at_ms: i64, what: String, deadline_ms: i64 },
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn signed(&mut self, p: &SignedPart) {
        self.bytes(&p.payload);
        self.raw(&p.signature.key_id);
        self.raw(&p.signature.sig);
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LeafError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], LeafError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, LeafError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, LeafError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, LeafError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<String, LeafError> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad("text is not UTF-8"))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, LeafError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn signed(&mut self) -> Result<SignedPart, LeafError> {
        let payload = self.bytes()?;
        Ok(SignedPart { payload, signature: LeafSignature { key_id: self.array()?, sig: self.array()? } })
    }
}

impl Leaf {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(vec![VERSION]);
        match self {
            Leaf::Transfer { intent, receipt } => {
                w.u8(KIND_TRANSFER);
                w.signed(intent);
                w.signed(receipt);
            }
            Leaf::Refusal {
                at_ms,
                zone,
                other_zone,
                refusing,
                reason,
                method,
                data_class,
                policy_id,
                subject_digest,
            } => {
                w.u8(KIND_REFUSAL);
                w.i64(*at_ms);
                w.str(zone);
                w.str(other_zone);
                w.u8(*refusing as u8);
                w.str(reason);
                w.str(method);
                w.str(data_class);
                w.str(policy_id);
                w.raw(subject_digest);
            }
            Leaf::Unacknowledged { intent, declared_at_ms } => {
                w.u8(KIND_UNACKNOWLEDGED);
                w.signed(intent);
                w.i64(*declared_at_ms);
            }
            Leaf::Config { at_ms, what, id, version, digest } => {
                w.u8(KIND_CONFIG);
                w.i64(*at_ms);
                w.str(what);
                w.str(id);
                w.u64(*version);
                w.raw(digest);
            }
            Leaf::Deletion { at_ms, what, deadline_ms } => {
                w.u8(KIND_DELETION);
                w.i64(*at_ms);
                w.str(what);
                w.i64(*deadline_ms);
            }
        }
        w.0
    }

    /// Decodes exactly: the version, a known kind, every field, nothing after.
    pub fn decode(b: &[u8]) -> Result<Self, LeafError> {
        if b.len() > MAX_LEAF_BYTES {
            return Err(bad("too large"));
        }
        let mut r = R(b);
        if r.u8()? != VERSION {
            return Err(bad("unknown version"));
        }
        let leaf = match r.u8()? {
            KIND_TRANSFER => Leaf::Transfer { intent: r.signed()?, receipt: r.signed()? },
            KIND_REFUSAL => Leaf::Refusal {
                at_ms: r.i64()?,
                zone: r.str()?,
                other_zone: r.str()?,
                refusing: Refusing::from_byte(r.u8()?).ok_or_else(|| bad("unknown refusal direction"))?,
                reason: r.str()?,
                method: r.str()?,
                data_class: r.str()?,
                policy_id: r.str()?,
                subject_digest: r.array()?,
            },
            KIND_UNACKNOWLEDGED => Leaf::Unacknowledged { intent: r.signed()?, declared_at_ms: r.i64()? },
            KIND_CONFIG => {
                Leaf::Config { at_ms: r.i64()?, what: r.str()?, id: r.str()?, version: r.u64()?, digest: r.array()? }
            }
            KIND_DELETION => Leaf::Deletion { at_ms: r.i64()?, what: r.str()?, deadline_ms: r.i64()? },
            k => return Err(bad(format!("unknown kind {k}"))),
        };
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(leaf)
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Leaf::Transfer { .. } => "transfer",
            Leaf::Refusal { .. } => "refusal",
            Leaf::Unacknowledged { .. } => "unacknowledged",
            Leaf::Config { .. } => "config",
            Leaf::Deletion { .. } => "deletion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u8) -> SignedPart {
        SignedPart { payload: vec![n; 10], signature: LeafSignature { key_id: [n; 16], sig: [n; 64] } }
    }

    fn all() -> Vec<Leaf> {
        vec![
            Leaf::Transfer { intent: part(1), receipt: part(2) },
            Leaf::Refusal {
                at_ms: 5,
                zone: "shanghai".into(),
                other_zone: "hainan".into(),
                refusing: Refusing::RefusedPeer,
                reason: "NO_POLICY".into(),
                method: "/ftz.v1.Peer/FetchRecord".into(),
                data_class: "certification".into(),
                policy_id: String::new(),
                subject_digest: [9; 32],
            },
            Leaf::Unacknowledged { intent: part(3), declared_at_ms: -1 },
            Leaf::Config { at_ms: 1, what: "policy".into(), id: "p".into(), version: 2, digest: [4; 32] },
            Leaf::Deletion { at_ms: 9, what: "record shanghai/R".into(), deadline_ms: 8 },
        ]
    }

    #[test]
    fn every_kind_round_trips_and_is_deterministic() {
        for l in all() {
            let b = l.encode();
            assert_eq!(Leaf::decode(&b).unwrap(), l);
            assert_eq!(b, l.clone().encode());
            assert_eq!(b[0], VERSION);
        }
    }

    #[test]
    fn the_documented_bytes_of_a_deletion() {
        // docs/audit-leaves.md, the worked example.
        let l = Leaf::Deletion { at_ms: 1, what: "x".into(), deadline_ms: 2 };
        assert_eq!(hex::encode(l.encode()), "0105000000000000000100017800000000000000 02".replace(' ', ""));
    }

    #[test]
    fn anything_else_is_refused() {
        for l in all() {
            let b = l.encode();
            // Every truncation, trailing byte, other version, other kind.
            for n in 0..b.len() {
                assert!(Leaf::decode(&b[..n]).is_err());
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(Leaf::decode(&longer).is_err());
            let mut v = b.clone();
            v[0] = 2;
            assert!(Leaf::decode(&v).is_err());
            let mut k = b.clone();
            k[1] = 9;
            assert!(Leaf::decode(&k).is_err());
        }
    }
}
