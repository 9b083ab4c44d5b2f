//! The federation registry: the signed list of zones, and the rules for accepting a new one.
//!
//! Trust in the federation flows only from here. A node holds one registry; a new version is
//! installed only if (a) it parses and passes every structural rule, (b) it belongs to the same
//! federation and is strictly newer, (c) it is within its validity period, (d) still lists the
//! node's own zone, and (e) enough distinct zone authorities signed it: at least the *installed*
//! registry's quorum among the authorities the node already trusts (so a minority cannot take
//! over by lowering the quorum or swapping keys), and at least the *new* registry's own quorum
//! among the authorities it lists (so it is self-consistent for the next rotation).
//! The very first registry has no predecessor; it must instead be signed by the trust anchor the
//! operator configured, an authority key id the node learnt out of band.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ftz_proto::{Envelope, FederationRegistry, KeyPurpose};
use prost::Message;
use thiserror::Error;

use crate::{
    KeyId, Reason, UnixMillis, VerifyingKey, ZoneId,
    envelope::{self, EnvelopeError, PayloadType},
};

/// Limits that keep a hostile registry from costing more than a real one.
pub const MAX_REGISTRY_BYTES: usize = 1024 * 1024;
pub const MAX_ZONES: usize = 256;
pub const MAX_KEYS_PER_ZONE: usize = 64;
pub const MAX_CA_CERT_BYTES: usize = 16 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("registry is malformed: {0}")]
    Malformed(String),
    #[error("registry belongs to federation {offered:?}, this node is in {held:?}")]
    WrongFederation { held: String, offered: String },
    #[error("registry version {offered} is older than the installed version {held}")]
    OlderVersion { held: u64, offered: u64 },
    #[error("registry version {0} is already installed with different content")]
    VersionConflict(u64),
    #[error("registry expired at {}", crate::time::format_ms(*.0))]
    Expired(UnixMillis),
    #[error("registry is not valid before {}", crate::time::format_ms(*.0))]
    NotYetValid(UnixMillis),
    #[error("registry does not list this node's zone {0} with a node key")]
    OmitsOwnZone(ZoneId),
    #[error("signed by {got} distinct {which} zone authorities, quorum is {need}")]
    UnderQuorum { need: u32, got: usize, which: &'static str },
    #[error("first registry must be signed by the configured trust anchor {0}, which it lists as an authority key")]
    AnchorMismatch(KeyId),
    #[error("no registry is installed and no trust anchor is configured to accept a first one")]
    NoAnchor,
}

impl RegistryError {
    pub fn reason(&self) -> Reason {
        match self {
            RegistryError::Envelope(e) => e.reason(),
            RegistryError::Malformed(_) => Reason::RegistryMalformed,
            RegistryError::WrongFederation { .. } => Reason::RegistryWrongFederation,
            RegistryError::OlderVersion { .. } => Reason::RegistryOlderVersion,
            RegistryError::VersionConflict(_) => Reason::RegistryVersionConflict,
            RegistryError::Expired(_) => Reason::RegistryExpired,
            RegistryError::NotYetValid(_) => Reason::RegistryNotYetValid,
            RegistryError::OmitsOwnZone(_) => Reason::RegistryOmitsOwnZone,
            RegistryError::UnderQuorum { .. } => Reason::RegistryUnderQuorum,
            RegistryError::AnchorMismatch(_) | RegistryError::NoAnchor => Reason::RegistryAnchorMismatch,
        }
    }
}

fn malformed(msg: impl Into<String>) -> RegistryError {
    RegistryError::Malformed(msg.into())
}

/// One key of a zone, decoded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneKey {
    pub purpose: KeyPurpose,
    pub key: VerifyingKey,
    pub id: KeyId,
    pub valid_from_ms: UnixMillis,
    /// `None`: no end yet.
    pub valid_until_ms: Option<UnixMillis>,
}

impl ZoneKey {
    pub fn valid_at(&self, t: UnixMillis) -> bool {
        t >= self.valid_from_ms && self.valid_until_ms.is_none_or(|u| t < u)
    }
}

/// One zone of the registry, decoded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: ZoneId,
    pub display_name: String,
    pub endpoint: String,
    pub ca_cert_der: Vec<u8>,
    pub keys: Vec<ZoneKey>,
    pub valid_from_ms: UnixMillis,
    pub valid_until_ms: UnixMillis,
}

impl Zone {
    pub fn valid_at(&self, t: UnixMillis) -> bool {
        t >= self.valid_from_ms && t < self.valid_until_ms
    }

    /// The zone's keys of one purpose that may sign at time `t`.
    pub fn keys_valid_at(&self, purpose: KeyPurpose, t: UnixMillis) -> impl Iterator<Item = &ZoneKey> {
        self.keys.iter().filter(move |k| k.purpose == purpose && k.valid_at(t))
    }

    /// The key with this id and purpose, if it may sign at time `t`.
    pub fn key_valid_at(&self, purpose: KeyPurpose, id: &KeyId, t: UnixMillis) -> Option<VerifyingKey> {
        self.keys_valid_at(purpose, t).find(|k| k.id == *id).map(|k| k.key)
    }
}

/// A structurally valid registry (signatures are checked by [`check_install`]).
#[derive(Debug, Clone)]
pub struct Registry {
    envelope: Envelope,
    doc: FederationRegistry,
    digest: [u8; 32],
    zones: BTreeMap<ZoneId, Zone>,
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Registry {
    /// Decodes an encoded `Envelope` holding a registry.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RegistryError> {
        if bytes.len() > MAX_REGISTRY_BYTES {
            return Err(malformed(format!("{} bytes, more than the {MAX_REGISTRY_BYTES} allowed", bytes.len())));
        }
        let env = Envelope::decode(bytes).map_err(|e| malformed(format!("not an envelope: {e}")))?;
        Self::parse(env)
    }

    /// Checks every structural rule of the document inside `envelope`.
    pub fn parse(envelope: Envelope) -> Result<Self, RegistryError> {
        let encoded_len = envelope.encoded_len();
        if encoded_len > MAX_REGISTRY_BYTES {
            return Err(malformed(format!("{encoded_len} bytes, more than the {MAX_REGISTRY_BYTES} allowed")));
        }
        let doc: FederationRegistry =
            envelope::decode_payload(&envelope, PayloadType::FEDERATION_REGISTRY).map_err(|e| match e {
                EnvelopeError::MalformedPayload { detail, .. } => {
                    malformed(format!("payload does not decode: {detail}"))
                }
                other => other.into(),
            })?;
        let digest = crate::sha256(&envelope.encode_to_vec());

        if doc.federation_id.is_empty()
            || doc.federation_id.len() > 64
            || !doc
                .federation_id
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        {
            return Err(malformed("federation_id must be 1-64 characters of [a-z0-9.-]"));
        }
        if doc.version == 0 {
            return Err(malformed("version must be at least 1"));
        }
        if doc.valid_from_ms >= doc.valid_until_ms {
            return Err(malformed("valid_from must be before valid_until"));
        }
        if doc.zones.is_empty() || doc.zones.len() > MAX_ZONES {
            return Err(malformed(format!("must list 1 to {MAX_ZONES} zones")));
        }
        if doc.quorum == 0 || doc.quorum as usize > doc.zones.len() {
            return Err(malformed(format!("quorum {} must be between 1 and the number of zones", doc.quorum)));
        }

        let mut zones = BTreeMap::new();
        let mut seen_keys: HashSet<KeyId> = HashSet::new();
        let mut seen_cas: HashSet<&[u8]> = HashSet::new();
        for z in &doc.zones {
            let zone = parse_zone(z)?;
            // One CA vouching for two zones would let either zone's CA issue the other's
            // identities: every zone has a CA of its own.
            if !seen_cas.insert(z.ca_cert_der.as_slice()) {
                return Err(malformed(format!("zone {} lists a CA another zone lists too", z.zone_id)));
            }
            for k in &zone.keys {
                if !seen_keys.insert(k.id) {
                    return Err(malformed(format!("key {} is listed more than once", k.id)));
                }
            }
            if zones.insert(zone.id.clone(), zone).is_some() {
                return Err(malformed(format!("zone {} is listed twice", z.zone_id)));
            }
        }
        Ok(Self { envelope, doc, digest, zones })
    }

    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.envelope.encode_to_vec()
    }

    pub fn document(&self) -> &FederationRegistry {
        &self.doc
    }

    /// SHA-256 of the encoded envelope: names exactly this signed registry.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    pub fn federation_id(&self) -> &str {
        &self.doc.federation_id
    }

    pub fn version(&self) -> u64 {
        self.doc.version
    }

    pub fn quorum(&self) -> u32 {
        self.doc.quorum
    }

    pub fn valid_at(&self, t: UnixMillis) -> bool {
        t >= self.doc.valid_from_ms && t < self.doc.valid_until_ms
    }

    pub fn valid_until_ms(&self) -> UnixMillis {
        self.doc.valid_until_ms
    }

    pub fn zone(&self, id: &ZoneId) -> Option<&Zone> {
        self.zones.get(id)
    }

    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    /// The zone and key entry for a key id, whatever its purpose or validity.
    pub fn find_key(&self, id: &KeyId) -> Option<(&Zone, &ZoneKey)> {
        self.zones.values().find_map(|z| z.keys.iter().find(|k| k.id == *id).map(|k| (z, k)))
    }

    /// An authority key valid at `t`, with its zone.
    fn authority_key(&self, id: &KeyId, t: UnixMillis) -> Option<(&ZoneId, VerifyingKey)> {
        self.zones.values().find_map(|z| z.key_valid_at(KeyPurpose::Authority, id, t).map(|k| (&z.id, k)))
    }

    /// The distinct zones whose authority keys (valid at `t`) are among `signers`.
    fn signing_zones(&self, signers: &[KeyId], t: UnixMillis) -> BTreeSet<ZoneId> {
        signers.iter().filter_map(|id| self.authority_key(id, t).map(|(z, _)| z.clone())).collect()
    }
}

fn parse_zone(z: &ftz_proto::ZoneEntry) -> Result<Zone, RegistryError> {
    let id = ZoneId::new(z.zone_id.clone()).map_err(|e| malformed(e.to_string()))?;
    if z.display_name.len() > 128 || z.display_name.chars().any(char::is_control) {
        return Err(malformed(format!("zone {id}: display name must be at most 128 printable bytes")));
    }
    check_endpoint(&z.endpoint).map_err(|e| malformed(format!("zone {id}: endpoint {:?}: {e}", trunc(&z.endpoint))))?;
    if z.ca_cert_der.is_empty() || z.ca_cert_der.len() > MAX_CA_CERT_BYTES {
        return Err(malformed(format!("zone {id}: CA certificate must be 1 to {MAX_CA_CERT_BYTES} bytes of DER")));
    }
    if z.valid_from_ms >= z.valid_until_ms {
        return Err(malformed(format!("zone {id}: valid_from must be before valid_until")));
    }
    if z.keys.is_empty() || z.keys.len() > MAX_KEYS_PER_ZONE {
        return Err(malformed(format!("zone {id}: must list 1 to {MAX_KEYS_PER_ZONE} keys")));
    }
    let mut keys = Vec::with_capacity(z.keys.len());
    for k in &z.keys {
        let purpose = KeyPurpose::try_from(k.purpose)
            .ok()
            .filter(|p| *p != KeyPurpose::Unspecified)
            .ok_or_else(|| malformed(format!("zone {id}: key purpose {} is unknown", k.purpose)))?;
        let key = VerifyingKey::from_bytes(&k.public_key).map_err(|e| malformed(format!("zone {id}: {e}")))?;
        let valid_until_ms = (k.valid_until_ms != 0).then_some(k.valid_until_ms);
        if valid_until_ms.is_some_and(|u| u <= k.valid_from_ms) {
            return Err(malformed(format!("zone {id}: key {} ends before it begins", key.key_id())));
        }
        keys.push(ZoneKey { purpose, id: key.key_id(), key, valid_from_ms: k.valid_from_ms, valid_until_ms });
    }
    for needed in [KeyPurpose::Authority, KeyPurpose::Node] {
        if !keys.iter().any(|k| k.purpose == needed) {
            return Err(malformed(format!("zone {id}: lists no {} key", needed.as_str_name())));
        }
    }
    Ok(Zone {
        id,
        display_name: z.display_name.clone(),
        endpoint: z.endpoint.clone(),
        ca_cert_der: z.ca_cert_der.clone(),
        keys,
        valid_from_ms: z.valid_from_ms,
        valid_until_ms: z.valid_until_ms,
    })
}

/// `host:port`, with a non-zero port; IPv6 hosts in brackets.
fn check_endpoint(ep: &str) -> Result<(), &'static str> {
    if ep.len() > 253 + 8 {
        return Err("too long");
    }
    let (host, port) = ep.rsplit_once(':').ok_or("must be host:port")?;
    let port: u16 = port.parse().map_err(|_| "port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("port is not a number from 1 to 65535");
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || !host.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':')) {
        return Err("host must be a DNS name or an IP address");
    }
    Ok(())
}

fn trunc(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What the node knows when deciding on a candidate registry.
#[derive(Debug, Clone, Copy)]
pub struct InstallContext<'a> {
    pub current: Option<&'a Registry>,
    pub own_zone: &'a ZoneId,
    /// Needed only while no registry is installed.
    pub anchor: Option<KeyId>,
    pub now: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallDecision {
    /// Install it. `counted` are the authority keys whose signatures met the quorum.
    Install { counted: Vec<KeyId> },
    /// Exactly this registry is installed already: nothing to do.
    AlreadyInstalled,
}

/// Decides whether `candidate` may replace `ctx.current`. Pure: the caller stores the result.
pub fn check_install(candidate: &Registry, ctx: InstallContext<'_>) -> Result<InstallDecision, RegistryError> {
    if let Some(cur) = ctx.current {
        if cur.federation_id() != candidate.federation_id() {
            return Err(RegistryError::WrongFederation {
                held: cur.federation_id().to_string(),
                offered: candidate.federation_id().to_string(),
            });
        }
        if candidate.version() == cur.version() {
            return if candidate.digest() == cur.digest() {
                Ok(InstallDecision::AlreadyInstalled)
            } else {
                Err(RegistryError::VersionConflict(cur.version()))
            };
        }
        if candidate.version() < cur.version() {
            return Err(RegistryError::OlderVersion { held: cur.version(), offered: candidate.version() });
        }
    }
    if ctx.now < candidate.doc.valid_from_ms {
        return Err(RegistryError::NotYetValid(candidate.doc.valid_from_ms));
    }
    if ctx.now >= candidate.doc.valid_until_ms {
        return Err(RegistryError::Expired(candidate.doc.valid_until_ms));
    }
    let own_listed = candidate.zone(ctx.own_zone).is_some_and(|z| z.keys.iter().any(|k| k.purpose == KeyPurpose::Node));
    if !own_listed {
        return Err(RegistryError::OmitsOwnZone(ctx.own_zone.clone()));
    }

    // A signature counts if its key is a currently valid authority key of the candidate or of
    // the installed registry; a known key with a bad signature refuses the whole document.
    let now = ctx.now;
    let signers = envelope::verify(candidate.envelope(), PayloadType::FEDERATION_REGISTRY, |id| {
        candidate.authority_key(id, now).or_else(|| ctx.current.and_then(|c| c.authority_key(id, now))).map(|(_, k)| k)
    })?;

    let new_zones = candidate.signing_zones(&signers, now);
    if new_zones.len() < candidate.quorum() as usize {
        return Err(RegistryError::UnderQuorum {
            need: candidate.quorum(),
            got: new_zones.len(),
            which: "newly listed",
        });
    }
    match ctx.current {
        Some(cur) => {
            let old_zones = cur.signing_zones(&signers, now);
            if old_zones.len() < cur.quorum() as usize {
                return Err(RegistryError::UnderQuorum {
                    need: cur.quorum(),
                    got: old_zones.len(),
                    which: "already trusted",
                });
            }
        }
        None => {
            let anchor = ctx.anchor.ok_or(RegistryError::NoAnchor)?;
            if !signers.contains(&anchor) || candidate.authority_key(&anchor, now).is_none() {
                return Err(RegistryError::AnchorMismatch(anchor));
            }
        }
    }
    Ok(InstallDecision::Install { counted: signers })
}

impl crate::Refusal for RegistryError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningKey, envelope::add_signature};
    use ftz_proto::{ZoneEntry, ZoneKey as PbKey};

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_800_000_000_000;

    struct Fed {
        authorities: Vec<SigningKey>,
        nodes: Vec<SigningKey>,
        names: Vec<&'static str>,
    }

    impl Fed {
        fn new() -> Self {
            let names = vec!["shanghai", "hainan", "guangdong"];
            let new_key = || SigningKey::generate().unwrap().0;
            Fed {
                authorities: names.iter().map(|_| new_key()).collect(),
                nodes: names.iter().map(|_| new_key()).collect(),
                names,
            }
        }

        fn doc(&self, version: u64, quorum: u32) -> FederationRegistry {
            FederationRegistry {
                federation_id: "ftz-test".into(),
                version,
                quorum,
                issued_at_ms: NOW,
                valid_from_ms: NOW - DAY,
                valid_until_ms: NOW + 365 * DAY,
                zones: self
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| ZoneEntry {
                        zone_id: n.to_string(),
                        display_name: n.to_uppercase(),
                        endpoint: format!("127.0.0.1:{}", 7000 + i),
                        ca_cert_der: vec![0x30, 0x01, i as u8],
                        keys: vec![
                            pb_key(KeyPurpose::Authority, &self.authorities[i]),
                            pb_key(KeyPurpose::Node, &self.nodes[i]),
                        ],
                        valid_from_ms: NOW - DAY,
                        valid_until_ms: NOW + 365 * DAY,
                    })
                    .collect(),
            }
        }

        fn signed(&self, doc: &FederationRegistry, by: &[usize]) -> Registry {
            let keys: Vec<&SigningKey> = by.iter().map(|i| &self.authorities[*i]).collect();
            Registry::parse(envelope::seal(PayloadType::FEDERATION_REGISTRY, doc, &keys)).unwrap()
        }
    }

    fn pb_key(purpose: KeyPurpose, k: &SigningKey) -> PbKey {
        PbKey {
            purpose: purpose as i32,
            public_key: k.verifying_key().as_bytes().to_vec(),
            valid_from_ms: 0,
            valid_until_ms: 0,
        }
    }

    fn zone() -> ZoneId {
        ZoneId::new("shanghai").unwrap()
    }

    fn ctx<'a>(current: Option<&'a Registry>, own: &'a ZoneId, anchor: Option<KeyId>) -> InstallContext<'a> {
        InstallContext { current, own_zone: own, anchor, now: NOW }
    }

    #[test]
    fn first_install_needs_anchor_and_quorum() {
        let f = Fed::new();
        let own = zone();
        let anchor = Some(f.authorities[0].key_id());
        let r = f.signed(&f.doc(1, 2), &[0, 1]);
        assert!(matches!(check_install(&r, ctx(None, &own, anchor)), Ok(InstallDecision::Install { .. })));
        // No anchor configured.
        assert_eq!(check_install(&r, ctx(None, &own, None)).unwrap_err(), RegistryError::NoAnchor);
        // The anchor did not sign.
        let r2 = f.signed(&f.doc(1, 2), &[1, 2]);
        assert_eq!(check_install(&r2, ctx(None, &own, anchor)).unwrap_err().reason(), Reason::RegistryAnchorMismatch);
        // Anchor signed but quorum not met.
        let r3 = f.signed(&f.doc(1, 2), &[0]);
        assert_eq!(check_install(&r3, ctx(None, &own, anchor)).unwrap_err().reason(), Reason::RegistryUnderQuorum);
    }

    #[test]
    fn update_needs_quorum_of_already_trusted_authorities() {
        let f = Fed::new();
        let own = zone();
        let v1 = f.signed(&f.doc(1, 2), &[0, 1, 2]);

        // v2 replaces two authorities' keys and lowers the quorum to 1, signed only by the new
        // keys and one old one: under the installed quorum of 2.
        let mut doc = f.doc(2, 1);
        let rogue: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap().0).collect();
        doc.zones[1].keys[0] = pb_key(KeyPurpose::Authority, &rogue[0]);
        doc.zones[2].keys[0] = pb_key(KeyPurpose::Authority, &rogue[1]);
        let mut env = envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &[&rogue[0], &rogue[1]]);
        let takeover = Registry::parse(env.clone()).unwrap();
        let err = check_install(&takeover, ctx(Some(&v1), &own, None)).unwrap_err();
        assert_eq!(err, RegistryError::UnderQuorum { need: 2, got: 0, which: "already trusted" });
        add_signature(&mut env, &f.authorities[0]);
        let still = Registry::parse(env.clone()).unwrap();
        assert_eq!(
            check_install(&still, ctx(Some(&v1), &own, None)).unwrap_err().reason(),
            Reason::RegistryUnderQuorum
        );
        // With a second old authority it is a legitimate rotation.
        add_signature(&mut env, &f.authorities[1]);
        let rotation = Registry::parse(env).unwrap();
        match check_install(&rotation, ctx(Some(&v1), &own, None)).unwrap() {
            InstallDecision::Install { counted } => assert_eq!(counted.len(), 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn versions_must_increase() {
        let f = Fed::new();
        let own = zone();
        let v2 = f.signed(&f.doc(2, 2), &[0, 1]);
        let v1 = f.signed(&f.doc(1, 2), &[0, 1]);
        assert_eq!(
            check_install(&v1, ctx(Some(&v2), &own, None)).unwrap_err(),
            RegistryError::OlderVersion { held: 2, offered: 1 }
        );
        assert_eq!(check_install(&v2, ctx(Some(&v2), &own, None)).unwrap(), InstallDecision::AlreadyInstalled);
        let mut other = f.doc(2, 2);
        other.zones[0].display_name = "changed".into();
        let v2b = f.signed(&other, &[0, 1]);
        assert_eq!(check_install(&v2b, ctx(Some(&v2), &own, None)).unwrap_err(), RegistryError::VersionConflict(2));
    }

    #[test]
    fn expiry_and_federation_are_checked() {
        let f = Fed::new();
        let own = zone();
        let v1 = f.signed(&f.doc(1, 2), &[0, 1]);
        let mut doc = f.doc(2, 2);
        doc.valid_until_ms = NOW - 1;
        doc.valid_from_ms = NOW - 2 * DAY;
        let expired = f.signed(&doc, &[0, 1, 2]);
        assert_eq!(check_install(&expired, ctx(Some(&v1), &own, None)).unwrap_err(), RegistryError::Expired(NOW - 1));
        let mut doc = f.doc(2, 2);
        doc.valid_from_ms = NOW + 1;
        let early = f.signed(&doc, &[0, 1, 2]);
        assert_eq!(
            check_install(&early, ctx(Some(&v1), &own, None)).unwrap_err().reason(),
            Reason::RegistryNotYetValid
        );
        let mut doc = f.doc(2, 2);
        doc.federation_id = "other".into();
        let foreign = f.signed(&doc, &[0, 1, 2]);
        assert_eq!(
            check_install(&foreign, ctx(Some(&v1), &own, None)).unwrap_err().reason(),
            Reason::RegistryWrongFederation
        );
    }

    #[test]
    fn bad_signature_refuses_even_with_quorum() {
        let f = Fed::new();
        let own = zone();
        let v1 = f.signed(&f.doc(1, 2), &[0, 1]);
        let v2 = f.signed(&f.doc(2, 2), &[0, 1, 2]);
        let mut env = v2.envelope().clone();
        env.signatures[2].sig[0] ^= 1;
        let bad = Registry::parse(env).unwrap();
        assert_eq!(check_install(&bad, ctx(Some(&v1), &own, None)).unwrap_err().reason(), Reason::BadSignature);
    }

    #[test]
    fn must_keep_listing_own_zone() {
        let f = Fed::new();
        let own = zone();
        let v1 = f.signed(&f.doc(1, 2), &[0, 1]);
        let mut doc = f.doc(2, 2);
        doc.zones.remove(0);
        let r = f.signed(&doc, &[0, 1, 2]);
        assert_eq!(
            check_install(&r, ctx(Some(&v1), &own, None)).unwrap_err(),
            RegistryError::OmitsOwnZone(own.clone())
        );
    }

    #[test]
    fn retired_authority_keys_do_not_count() {
        let f = Fed::new();
        let own = zone();
        let mut doc1 = f.doc(1, 2);
        doc1.zones[1].keys[0].valid_until_ms = NOW - 1;
        let v1 = f.signed(&doc1, &[0, 1, 2]);
        let v2 = f.signed(&f.doc(2, 2), &[0, 1]);
        // hainan's key is valid in v2 but retired in v1: only shanghai counts among the trusted.
        assert_eq!(
            check_install(&v2, ctx(Some(&v1), &own, None)).unwrap_err(),
            RegistryError::UnderQuorum { need: 2, got: 1, which: "already trusted" }
        );
    }

    #[test]
    fn structural_rules() {
        let f = Fed::new();
        type Mutation = Box<dyn Fn(&mut FederationRegistry)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("version 0", Box::new(|d| d.version = 0)),
            ("quorum 0", Box::new(|d| d.quorum = 0)),
            ("quorum above zones", Box::new(|d| d.quorum = 4)),
            ("no zones", Box::new(|d| d.zones.clear())),
            ("bad federation id", Box::new(|d| d.federation_id = "Bad Fed".into())),
            ("inverted validity", Box::new(|d| d.valid_until_ms = d.valid_from_ms)),
            (
                "duplicate zone",
                Box::new(|d| {
                    let z = d.zones[0].clone();
                    d.zones.push(z)
                }),
            ),
            ("bad zone id", Box::new(|d| d.zones[0].zone_id = "Shanghai".into())),
            ("bad endpoint", Box::new(|d| d.zones[0].endpoint = "no-port".into())),
            ("port zero", Box::new(|d| d.zones[0].endpoint = "host:0".into())),
            ("empty CA", Box::new(|d| d.zones[0].ca_cert_der.clear())),
            ("shared CA", Box::new(|d| d.zones[1].ca_cert_der = d.zones[0].ca_cert_der.clone())),
            ("short key", Box::new(|d| d.zones[0].keys[0].public_key.pop().map(|_| ()).unwrap_or(()))),
            ("unknown purpose", Box::new(|d| d.zones[0].keys[0].purpose = 9)),
            (
                "no node key",
                Box::new(|d| {
                    d.zones[0].keys.remove(1);
                }),
            ),
            (
                "shared key",
                Box::new(|d| {
                    let k = d.zones[0].keys[0].clone();
                    d.zones[1].keys.push(k)
                }),
            ),
            (
                "key ends before it begins",
                Box::new(|d| {
                    d.zones[0].keys[0].valid_from_ms = 10;
                    d.zones[0].keys[0].valid_until_ms = 5
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut doc = f.doc(1, 2);
            mutate(&mut doc);
            let env = envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &[&f.authorities[0]]);
            let err = Registry::parse(env).expect_err(name);
            assert_eq!(err.reason(), Reason::RegistryMalformed, "{name}: {err}");
        }
        assert_eq!(Registry::from_bytes(&[0xff; 8]).unwrap_err().reason(), Reason::RegistryMalformed);
        let wrong_type = envelope::seal("ftz.v1.Other", &f.doc(1, 2), &[&f.authorities[0]]);
        assert_eq!(Registry::parse(wrong_type).unwrap_err().reason(), Reason::WrongPayloadType);
    }

    #[test]
    fn round_trips_through_bytes() {
        let f = Fed::new();
        let r = f.signed(&f.doc(1, 2), &[0, 1]);
        let back = Registry::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.zones().count(), 3);
        let (z, k) = back.find_key(&f.nodes[1].key_id()).unwrap();
        assert_eq!(z.id.as_str(), "hainan");
        assert_eq!(k.purpose, KeyPurpose::Node);
    }
}
