//! Mutual-recognition agreements: structure, install rules, and which records they cover.

use ftz_core::{
    KeyId, Reason, Registry, UnixMillis, ZoneId,
    envelope::{self, EnvelopeError, PayloadType},
    records::{Record, check_id, check_text, check_type},
};
use ftz_proto::{Envelope, KeyPurpose, RecognitionAgreement, RecognitionRule, RecordKind};
use prost::Message;
use thiserror::Error;

pub const MAX_RULES: usize = 64;
pub const MAX_LIST: usize = 256;
pub const MAX_AGREEMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AgreementError {
    #[error("agreement is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("agreement must be signed by the authorities of both {from} and {to}; missing: {missing}")]
    UnderSigned { from: String, to: String, missing: String },
    #[error("agreement names zone {0}, which registry v{1} does not list")]
    UnknownZone(String, u64),
    #[error("agreement between {0} and {1} does not involve this zone ({2})")]
    NotForThisZone(String, String, String),
    #[error("agreement {id} version {installed} is installed; version {offered} is not newer")]
    OlderVersion { id: String, installed: u64, offered: u64 },
    #[error("agreement {0} expired at {1}")]
    Expired(String, String),
}

impl AgreementError {
    pub fn reason(&self) -> Reason {
        match self {
            AgreementError::Malformed(_) => Reason::AgreementMalformed,
            AgreementError::Envelope(e) => e.reason(),
            AgreementError::UnderSigned { .. } => Reason::AgreementUnderSigned,
            AgreementError::UnknownZone(..) => Reason::AgreementUnknownZone,
            AgreementError::NotForThisZone(..) => Reason::AgreementNotForThisZone,
            AgreementError::OlderVersion { .. } => Reason::AgreementOlderVersion,
            AgreementError::Expired(..) => Reason::AgreementExpired,
        }
    }
}

fn malformed(m: impl Into<String>) -> AgreementError {
    AgreementError::Malformed(m.into())
}

/// A structurally valid agreement (signatures are checked by [`check_install`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub envelope: Envelope,
    pub doc: RecognitionAgreement,
    pub from: ZoneId,
    pub to: ZoneId,
}

impl Agreement {
    pub fn parse(envelope: Envelope) -> Result<Self, AgreementError> {
        if envelope.encoded_len() > MAX_AGREEMENT_BYTES {
            return Err(malformed(format!("more than {MAX_AGREEMENT_BYTES} bytes")));
        }
        let doc: RecognitionAgreement = envelope::decode_payload(&envelope, PayloadType::RECOGNITION_AGREEMENT)
            .map_err(|e| match e {
                EnvelopeError::MalformedPayload { detail, .. } => {
                    malformed(format!("payload does not decode: {detail}"))
                }
                other => other.into(),
            })?;
        let m = |e: ftz_core::records::RecordError| malformed(e.to_string());
        check_id("agreement_id", &doc.agreement_id).map_err(m)?;
        if doc.version == 0 {
            return Err(malformed("version must be at least 1"));
        }
        let from = ZoneId::new(doc.from_zone.clone()).map_err(|e| malformed(e.to_string()))?;
        let to = ZoneId::new(doc.to_zone.clone()).map_err(|e| malformed(e.to_string()))?;
        if from == to {
            return Err(malformed("from_zone and to_zone must differ"));
        }
        if doc.valid_from_ms >= doc.valid_until_ms {
            return Err(malformed("valid_from must be before valid_until"));
        }
        if doc.rules.is_empty() || doc.rules.len() > MAX_RULES {
            return Err(malformed(format!("an agreement has 1 to {MAX_RULES} rules")));
        }
        for (i, r) in doc.rules.iter().enumerate() {
            check_rule(i, r)?;
        }
        Ok(Self { envelope, doc, from, to })
    }

    pub fn id(&self) -> &str {
        &self.doc.agreement_id
    }

    pub fn version(&self) -> u64 {
        self.doc.version
    }

    pub fn in_force_at(&self, t: UnixMillis) -> bool {
        t >= self.doc.valid_from_ms && t < self.doc.valid_until_ms
    }

    /// Whether some rule admits `record` (validity aside).
    pub fn covers(&self, record: &Record) -> bool {
        self.doc.rules.iter().any(|r| rule_covers(r, record))
    }

    /// One line per rule, for people.
    pub fn describe_rules(&self) -> Vec<String> {
        self.doc.rules.iter().map(describe_rule).collect()
    }
}

fn check_rule(i: usize, r: &RecognitionRule) -> Result<(), AgreementError> {
    let kind = RecordKind::try_from(r.kind).ok().filter(|k| *k != RecordKind::Unspecified);
    let Some(kind) = kind else {
        return Err(malformed(format!("rules[{i}].kind must be CERTIFICATION or INSPECTION")));
    };
    if kind == RecordKind::Certification && r.record_types.is_empty() {
        return Err(malformed(format!("rules[{i}]: a certification rule must name its record types")));
    }
    for list in [&r.record_types, &r.scope_prefixes, &r.issuing_bodies, &r.accreditation_schemes] {
        if list.len() > MAX_LIST {
            return Err(malformed(format!("rules[{i}]: at most {MAX_LIST} entries per list")));
        }
    }
    let m = |e: ftz_core::records::RecordError| malformed(format!("rules[{i}]: {e}"));
    for t in &r.record_types {
        check_type("record_types", t).map_err(m)?;
    }
    for v in r.scope_prefixes.iter().chain(&r.issuing_bodies).chain(&r.accreditation_schemes) {
        check_text("entry", v, 256, true).map_err(m)?;
    }
    Ok(())
}

fn rule_covers(r: &RecognitionRule, rec: &Record) -> bool {
    r.kind == rec.kind() as i32
        && (r.record_types.is_empty() || rec.record_type().is_some_and(|t| r.record_types.iter().any(|x| x == t)))
        && (r.scope_prefixes.is_empty() || r.scope_prefixes.iter().any(|p| rec.scope().starts_with(p.as_str())))
        && (r.issuing_bodies.is_empty() || r.issuing_bodies.iter().any(|b| b == rec.body()))
        && (r.accreditation_schemes.is_empty()
            || r.accreditation_schemes.iter().any(|s| s == rec.accreditation_scheme()))
}

fn describe_rule(r: &RecognitionRule) -> String {
    let list = |v: &[String]| if v.is_empty() { "*".to_string() } else { v.join(",") };
    let kind = match RecordKind::try_from(r.kind) {
        Ok(RecordKind::Certification) => "certification",
        Ok(RecordKind::Inspection) => "inspection",
        _ => "?",
    };
    format!(
        "{kind} types {} scopes {} bodies {} schemes {}",
        list(&r.record_types),
        list(&r.scope_prefixes),
        list(&r.issuing_bodies),
        list(&r.accreditation_schemes)
    )
}

/// What installing an agreement would do.
#[derive(Debug, Clone, PartialEq)]
pub enum AgreementDecision {
    Install { signers: Vec<KeyId> },
    AlreadyInstalled,
}

/// May `candidate` be installed on the node of `own_zone`, holding `installed` (the same id's
/// current version, if any)? Both zones must be in the registry, `own_zone` must be one of them,
/// it must be in force or yet to begin (not expired), newer than the installed version, and
/// signed by an authority key (valid now) of each zone.
pub fn check_install(
    candidate: &Agreement,
    registry: &Registry,
    own_zone: &ZoneId,
    installed: Option<&Agreement>,
    now: UnixMillis,
) -> Result<AgreementDecision, AgreementError> {
    for z in [&candidate.from, &candidate.to] {
        if registry.zone(z).is_none() {
            return Err(AgreementError::UnknownZone(z.to_string(), registry.version()));
        }
    }
    if *own_zone != candidate.from && *own_zone != candidate.to {
        return Err(AgreementError::NotForThisZone(
            candidate.from.to_string(),
            candidate.to.to_string(),
            own_zone.to_string(),
        ));
    }
    if let Some(old) = installed {
        if old.envelope == candidate.envelope {
            return Ok(AgreementDecision::AlreadyInstalled);
        }
        if candidate.version() <= old.version() {
            return Err(AgreementError::OlderVersion {
                id: candidate.id().to_string(),
                installed: old.version(),
                offered: candidate.version(),
            });
        }
    }
    if now >= candidate.doc.valid_until_ms {
        return Err(AgreementError::Expired(
            candidate.id().to_string(),
            ftz_core::time::format_ms(candidate.doc.valid_until_ms),
        ));
    }
    let signers = check_signatures(candidate, registry, now)?;
    Ok(AgreementDecision::Install { signers })
}

/// Checks that an authority key of each of the agreement's two zones, valid at `at` in
/// `registry`, signed it (and that no known key's signature fails). Returns the signers.
pub fn check_signatures(
    candidate: &Agreement,
    registry: &Registry,
    at: UnixMillis,
) -> Result<Vec<KeyId>, AgreementError> {
    for z in [&candidate.from, &candidate.to] {
        if registry.zone(z).is_none() {
            return Err(AgreementError::UnknownZone(z.to_string(), registry.version()));
        }
    }
    let authority =
        |z: &ZoneId, id: &KeyId| registry.zone(z).and_then(|zone| zone.key_valid_at(KeyPurpose::Authority, id, at));
    let signers = envelope::verify(&candidate.envelope, PayloadType::RECOGNITION_AGREEMENT, |id| {
        authority(&candidate.from, id).or_else(|| authority(&candidate.to, id))
    })
    .or_else(|e| match e {
        // Unsigned, or signed by nobody who counts: reported as the missing signers below.
        EnvelopeError::NoTrustedSignature | EnvelopeError::Unsigned => Ok(Vec::new()),
        other => Err(other),
    })?;
    let signed_by = |z: &ZoneId| signers.iter().any(|id| authority(z, id).is_some());
    let missing: Vec<String> =
        [&candidate.from, &candidate.to].into_iter().filter(|z| !signed_by(z)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(AgreementError::UnderSigned {
            from: candidate.from.to_string(),
            to: candidate.to.to_string(),
            missing: missing.join(", "),
        });
    }
    Ok(signers)
}

impl ftz_core::Refusal for AgreementError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}
