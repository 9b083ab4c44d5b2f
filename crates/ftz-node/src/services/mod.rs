//! The gRPC services. Each only runs after `auth` has authenticated and authorized the caller.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod issuer;
pub(crate) mod peer;
pub(crate) mod verify;

use ftz_core::registry::{Zone, ZoneKey};
use ftz_policy::Recognition;
use ftz_proto::{KeySummary, VerificationResult, ZoneSummary};

use crate::recognition::Checked;

/// A verdict as the Verify service returns it.
pub(crate) fn verification_result(c: Checked) -> VerificationResult {
    let v = &c.verdict;
    let (agreement_id, agreement_version) = match &v.recognition {
        Ok(Recognition::Agreement { id, version }) => (id.clone(), *version),
        _ => (String::new(), 0),
    };
    VerificationResult {
        record_id: v.record_id.clone(),
        issuing_zone: v.issuing_zone.clone(),
        kind: v.kind as i32,
        source: c.source.to_string(),
        authentic: v.authentic.is_ok(),
        authenticity_reason: v.authentic.as_ref().err().map(ToString::to_string).unwrap_or_default(),
        signing_key_id: v.authentic.as_ref().map(ToString::to_string).unwrap_or_default(),
        status: v.status as i32,
        status_reason: v.status_reason.map(|r| r.to_string()).unwrap_or_default(),
        status_as_of_ms: v.status_as_of_ms.unwrap_or_default(),
        status_age_ms: v.status_age_ms().unwrap_or_default(),
        revocation: v.revocation.clone(),
        recognising_zone: v.recognising_zone.clone(),
        recognised: v.recognition.is_ok(),
        agreement_id,
        agreement_version,
        recognition_reason: v.recognition.as_ref().err().map(ToString::to_string).unwrap_or_default(),
        valid: v.valid(),
        checked_at_ms: v.checked_at_ms,
        explanation: v.explanation(),
        record: Some(c.record),
    }
}

pub(crate) fn key_summary(k: &ZoneKey) -> KeySummary {
    KeySummary {
        purpose: k.purpose as i32,
        key_id: k.id.to_string(),
        public_key: k.key.as_bytes().to_vec(),
        valid_from_ms: k.valid_from_ms,
        valid_until_ms: k.valid_until_ms.unwrap_or(0),
    }
}

pub(crate) fn zone_summary(z: &Zone) -> ZoneSummary {
    ZoneSummary {
        zone_id: z.id.to_string(),
        display_name: z.display_name.clone(),
        endpoint: z.endpoint.clone(),
        valid_from_ms: z.valid_from_ms,
        valid_until_ms: z.valid_until_ms,
        keys: z.keys.iter().map(key_summary).collect(),
    }
}
