//! Test fixtures shared by the policy crate's tests: a three-zone registry with every key.

use ftz_core::{
    Registry, SigningKey,
    envelope::{self, PayloadType},
};
use ftz_proto::{
    FederationRegistry, KeyPurpose, RecognitionAgreement, RecognitionRule, RecordKind, ZoneEntry, ZoneKey,
};

use crate::Agreement;

pub const DAY: i64 = 86_400_000;
pub const NOW: i64 = 1_800_000_000_000;
pub const MAX_AGE: i64 = 600_000;

pub struct Zone {
    pub authority: SigningKey,
    pub node: SigningKey,
    pub issuing: SigningKey,
}

pub struct Fixture {
    pub zones: Vec<(&'static str, Zone)>,
    /// An issuing key listed for shanghai that only became valid after NOW - DAY.
    pub late_issuing: SigningKey,
    pub registry: Registry,
}

pub fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

fn pb(purpose: KeyPurpose, k: &SigningKey, from: i64, until: i64) -> ZoneKey {
    ZoneKey {
        purpose: purpose as i32,
        public_key: k.verifying_key().as_bytes().to_vec(),
        valid_from_ms: from,
        valid_until_ms: until,
    }
}

impl Fixture {
    pub fn new() -> Self {
        let zones: Vec<(&str, Zone)> = ["shanghai", "hainan", "guangdong"]
            .into_iter()
            .map(|n| (n, Zone { authority: key(), node: key(), issuing: key() }))
            .collect();
        let late_issuing = key();
        let doc = FederationRegistry {
            federation_id: "t".into(),
            version: 1,
            quorum: 2,
            issued_at_ms: NOW,
            valid_from_ms: 0,
            valid_until_ms: NOW + 365 * DAY,
            zones: zones
                .iter()
                .map(|(n, z)| {
                    let mut keys = vec![
                        pb(KeyPurpose::Authority, &z.authority, 0, 0),
                        pb(KeyPurpose::Node, &z.node, 0, 0),
                        pb(KeyPurpose::Issuing, &z.issuing, 0, 0),
                    ];
                    if *n == "shanghai" {
                        keys.push(pb(KeyPurpose::Issuing, &late_issuing, NOW - DAY, 0));
                    }
                    ZoneEntry {
                        zone_id: n.to_string(),
                        display_name: n.to_string(),
                        endpoint: "127.0.0.1:1".into(),
                        ca_cert_der: [b"\x30".as_slice(), n.as_bytes()].concat(),
                        keys,
                        valid_from_ms: 0,
                        valid_until_ms: NOW + 365 * DAY,
                    }
                })
                .collect(),
        };
        let auths: Vec<&SigningKey> = zones.iter().map(|(_, z)| &z.authority).collect();
        let registry = Registry::parse(envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &auths)).unwrap();
        Fixture { zones, late_issuing, registry }
    }

    pub fn z(&self, name: &str) -> &Zone {
        &self.zones.iter().find(|(n, _)| *n == name).unwrap().1
    }

    pub fn agreement(&self, id: &str, from: &str, to: &str, types: &[&str], until: i64, signers: &[&str]) -> Agreement {
        let doc = RecognitionAgreement {
            agreement_id: id.into(),
            version: 1,
            from_zone: from.into(),
            to_zone: to.into(),
            rules: vec![RecognitionRule {
                kind: RecordKind::Certification as i32,
                record_types: types.iter().map(|t| t.to_string()).collect(),
                scope_prefixes: vec![],
                issuing_bodies: vec![],
                accreditation_schemes: vec![],
            }],
            valid_from_ms: NOW - 30 * DAY,
            valid_until_ms: until,
        };
        let keys: Vec<&SigningKey> = signers.iter().map(|s| &self.z(s).authority).collect();
        Agreement::parse(envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &doc, &keys)).unwrap()
    }
}
