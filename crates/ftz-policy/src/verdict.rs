//! The verdict on a record: is it authentic, what is its status, is it recognised in a zone?
//!
//! One function, [`evaluate`], used by the node for every verification and by `ftzctl verify
//! offline` for bundles, so online and offline answers cannot drift apart. It fails closed:
//! anything it cannot establish makes the record not valid, with the reason.

use ftz_core::{
    KeyId, Reason, Registry, UnixMillis, ZoneId,
    envelope::{self, EnvelopeError, PayloadType},
    records::{Record, record_digest},
};
use ftz_proto::{Envelope, KeyPurpose, RecordKind, RecordStatus, Revocation, StatusStatement};

use crate::{Agreement, exchange::age_words};

/// What the verdict is judged against.
#[derive(Debug, Clone, Copy)]
pub struct VerdictContext<'a> {
    pub registry: &'a Registry,
    /// Agreements whose signatures were already checked (installed, or checked offline).
    pub agreements: &'a [Agreement],
    pub recognising_zone: &'a ZoneId,
    pub now: UnixMillis,
    /// A status statement older than this is not trusted: the status is UNKNOWN.
    pub max_status_age_ms: i64,
    /// How far in the future a statement's time may be before it is refused.
    pub max_clock_skew_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognition {
    /// Issued in the recognising zone itself.
    Native,
    /// Recognised under this agreement.
    Agreement { id: String, version: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub record: Option<Record>,
    pub record_id: String,
    pub issuing_zone: String,
    pub kind: RecordKind,
    /// The issuing key that signed it, or why it is not authentic.
    pub authentic: Result<KeyId, Reason>,
    pub status: RecordStatus,
    /// Why the status is not ACTIVE.
    pub status_reason: Option<Reason>,
    pub status_as_of_ms: Option<UnixMillis>,
    pub revocation: Option<Envelope>,
    pub recognition: Result<Recognition, Reason>,
    pub recognising_zone: String,
    pub checked_at_ms: UnixMillis,
}

impl Verdict {
    /// Authentic, active and recognised: the only combination that is valid.
    pub fn valid(&self) -> bool {
        self.authentic.is_ok() && self.status == RecordStatus::Active && self.recognition.is_ok()
    }

    pub fn status_age_ms(&self) -> Option<i64> {
        self.status_as_of_ms.map(|t| self.checked_at_ms.saturating_sub(t))
    }

    /// One line for people.
    pub fn explanation(&self) -> String {
        let mut parts = Vec::new();
        match &self.authentic {
            Ok(k) => parts.push(format!("authentic (signed by {} issuing key {k})", self.issuing_zone)),
            Err(r) => parts.push(format!("not authentic: {r}")),
        }
        let status = self.status.as_str_name().trim_start_matches("RECORD_STATUS_").to_lowercase();
        match (self.status_reason, self.status_age_ms()) {
            (None, Some(age)) => parts.push(format!("{status} (stated {} ago)", age_words(age))),
            (Some(r), Some(age)) => parts.push(format!("{status}: {r} (stated {} ago)", age_words(age))),
            (Some(r), None) => parts.push(format!("{status}: {r}")),
            (None, None) => parts.push(status),
        }
        match &self.recognition {
            Ok(Recognition::Native) => parts.push(format!("issued in {} itself", self.recognising_zone)),
            Ok(Recognition::Agreement { id, version }) => {
                parts.push(format!("recognised in {} under agreement {id} v{version}", self.recognising_zone))
            }
            Err(r) => parts.push(format!("not recognised in {}: {r}", self.recognising_zone)),
        }
        format!("{}: {}", if self.valid() { "VALID" } else { "NOT VALID" }, parts.join("; "))
    }
}

/// Judges `record` (a signed Certification or InspectionResult) with the issuing zone's
/// `status` statement, if one is known.
pub fn evaluate(record: &Envelope, status: Option<&Envelope>, ctx: &VerdictContext<'_>) -> Verdict {
    let checked_at_ms = ctx.now;
    let parsed = match Record::from_envelope(record) {
        Ok(r) => r,
        Err(e) => {
            return Verdict {
                record: None,
                record_id: String::new(),
                issuing_zone: String::new(),
                kind: RecordKind::Unspecified,
                authentic: Err(e.reason()),
                status: RecordStatus::Unknown,
                status_reason: Some(e.reason()),
                status_as_of_ms: None,
                revocation: None,
                recognition: Err(e.reason()),
                recognising_zone: ctx.recognising_zone.to_string(),
                checked_at_ms,
            };
        }
    };
    let authentic = authenticate(record, &parsed, ctx.registry);
    let st = match &authentic {
        Ok(_) => judge_status(&parsed, record_digest(record), status, ctx),
        Err(r) => StatusFinding { status: RecordStatus::Unknown, reason: Some(*r), as_of: None, revocation: None },
    };
    let recognition = recognise(&parsed, ctx);
    Verdict {
        record_id: parsed.record_id().to_string(),
        issuing_zone: parsed.issuing_zone().to_string(),
        kind: parsed.kind(),
        record: Some(parsed),
        authentic,
        status: st.status,
        status_reason: st.reason,
        status_as_of_ms: st.as_of,
        revocation: st.revocation,
        recognition,
        recognising_zone: ctx.recognising_zone.to_string(),
        checked_at_ms,
    }
}

/// Signed by an issuing key the registry lists for the record's zone, valid when the record
/// says it was signed.
fn authenticate(env: &Envelope, rec: &Record, registry: &Registry) -> Result<KeyId, Reason> {
    let zone_id = ZoneId::new(rec.issuing_zone()).map_err(|_| Reason::RecordMalformed)?;
    let zone = registry.zone(&zone_id).ok_or(Reason::IssuingZoneUnknown)?;
    let at = rec.issued_at_ms();
    match envelope::verify(env, rec.payload_type(), |id| zone.key_valid_at(KeyPurpose::Issuing, id, at)) {
        Ok(signers) => signers.first().copied().ok_or(Reason::NoTrustedSignature),
        Err(EnvelopeError::NoTrustedSignature) => {
            let listed = env.signatures.iter().any(|s| {
                KeyId::from_slice(&s.key_id)
                    .is_ok_and(|id| zone.keys.iter().any(|k| k.purpose == KeyPurpose::Issuing && k.id == id))
            });
            Err(if listed { Reason::IssuerKeyNotValid } else { Reason::IssuerKeyUnknown })
        }
        Err(e) => Err(e.reason()),
    }
}

struct StatusFinding {
    status: RecordStatus,
    reason: Option<Reason>,
    as_of: Option<UnixMillis>,
    revocation: Option<Envelope>,
}

fn judge_status(rec: &Record, digest: [u8; 32], status: Option<&Envelope>, ctx: &VerdictContext<'_>) -> StatusFinding {
    let finding = |status, reason, as_of| StatusFinding { status, reason, as_of, revocation: None };
    let expired = rec.expires_at_ms().is_some_and(|e| ctx.now >= e);
    let Some(senv) = status else {
        return if expired {
            finding(RecordStatus::Expired, Some(Reason::RecordExpired), None)
        } else {
            finding(RecordStatus::Unknown, Some(Reason::StatusUnavailable), None)
        };
    };
    let Ok(stmt) = statement(senv, rec, digest, ctx) else {
        return finding(RecordStatus::Unknown, Some(Reason::StatusInvalid), None);
    };
    let as_of = Some(stmt.as_of_ms);
    match RecordStatus::try_from(stmt.status) {
        Ok(RecordStatus::Revoked) => {
            match stmt.revocation.as_ref().map(|r| check_revocation(r, rec, digest, ctx.registry)) {
                Some(true) => StatusFinding {
                    status: RecordStatus::Revoked,
                    reason: Some(Reason::RecordRevoked),
                    as_of,
                    revocation: stmt.revocation.clone(),
                },
                _ => finding(RecordStatus::Unknown, Some(Reason::StatusInvalid), as_of),
            }
        }
        Ok(RecordStatus::Expired) => finding(RecordStatus::Expired, Some(Reason::RecordExpired), as_of),
        Ok(RecordStatus::Active) if expired => finding(RecordStatus::Expired, Some(Reason::RecordExpired), as_of),
        Ok(RecordStatus::Active) if ctx.now.saturating_sub(stmt.as_of_ms) > ctx.max_status_age_ms => {
            finding(RecordStatus::Unknown, Some(Reason::StatusStale), as_of)
        }
        Ok(RecordStatus::Active) => finding(RecordStatus::Active, None, as_of),
        _ => finding(RecordStatus::Unknown, Some(Reason::StatusInvalid), as_of),
    }
}

/// A status statement signed by a node key of the issuing zone (valid when it was made), about
/// exactly this record, not from the future.
fn statement(senv: &Envelope, rec: &Record, digest: [u8; 32], ctx: &VerdictContext<'_>) -> Result<StatusStatement, ()> {
    let stmt: StatusStatement = envelope::decode_payload(senv, PayloadType::STATUS_STATEMENT).map_err(|_| ())?;
    let zone = ZoneId::new(rec.issuing_zone()).ok().and_then(|z| ctx.registry.zone(&z)).ok_or(())?;
    envelope::verify(senv, PayloadType::STATUS_STATEMENT, |id| zone.key_valid_at(KeyPurpose::Node, id, stmt.as_of_ms))
        .map_err(|_| ())?;
    let matches = stmt.record_id == rec.record_id()
        && stmt.issuing_zone == rec.issuing_zone()
        && stmt.record_digest == digest
        && stmt.as_of_ms <= ctx.now.saturating_add(ctx.max_clock_skew_ms);
    if matches { Ok(stmt) } else { Err(()) }
}

/// A revocation signed by an issuing key of the record's zone, for exactly this record.
fn check_revocation(env: &Envelope, rec: &Record, digest: [u8; 32], registry: &Registry) -> bool {
    let Ok(rev) = envelope::decode_payload::<Revocation>(env, PayloadType::REVOCATION) else {
        return false;
    };
    let Some(zone) = ZoneId::new(rec.issuing_zone()).ok().and_then(|z| registry.zone(&z)) else {
        return false;
    };
    envelope::verify(env, PayloadType::REVOCATION, |id| zone.key_valid_at(KeyPurpose::Issuing, id, rev.revoked_at_ms))
        .is_ok()
        && rev.record_id == rec.record_id()
        && rev.issuing_zone == rec.issuing_zone()
        && rev.record_digest == digest
}

fn recognise(rec: &Record, ctx: &VerdictContext<'_>) -> Result<Recognition, Reason> {
    if rec.issuing_zone() == ctx.recognising_zone.as_str() {
        return Ok(Recognition::Native);
    }
    let relevant: Vec<&Agreement> = ctx
        .agreements
        .iter()
        .filter(|a| a.from.as_str() == rec.issuing_zone() && a.to == *ctx.recognising_zone)
        .collect();
    if relevant.is_empty() {
        return Err(Reason::NoAgreement);
    }
    let covering: Vec<&&Agreement> = relevant.iter().filter(|a| a.covers(rec)).collect();
    if covering.is_empty() {
        return Err(Reason::NotCovered);
    }
    covering
        .iter()
        .filter(|a| a.in_force_at(ctx.now))
        .max_by_key(|a| a.version())
        .map(|a| Recognition::Agreement { id: a.id().to_string(), version: a.version() })
        .ok_or(Reason::AgreementExpired)
}

#[cfg(test)]
mod tests;
