//! Offline verification of a bundle exported by `Verify.ExportBundle`: no network, only the
//! bundle, a trust anchor and a time.
//!
//! Order of checks: the bundle's registry must be signed by a quorum of the authorities it lists
//! *and* by the anchor the verifier trusts, be in force at the time of judgement and not older
//! than the verifier's minimum version; the bundle must be signed by a node key that registry
//! lists for the exporting zone as valid at the time of judgement (so any changed byte fails);
//! every agreement inside must be signed by both its zones' authorities; then the record is
//! judged by the same [`evaluate`](crate::evaluate) the nodes use.
//!
//! The exporting node is not trusted for anything the verifier can decide itself: how old a
//! status may be is the verifier's choice (by default as strict as a node's), and the bundle's
//! own maximum age can only narrow it; the export time it states is not the time anything is
//! judged at.

use std::collections::BTreeSet;

use ftz_core::{
    KeyId, Reason, Registry, UnixMillis, ZoneId,
    envelope::{self, PayloadType},
};
use ftz_proto::{Envelope, KeyPurpose, VerificationBundle};
use prost::Message;
use thiserror::Error;

use crate::{Agreement, Verdict, VerdictContext, agreement::check_signatures, evaluate};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("bundle is invalid: {0}")]
    Invalid(String),
    #[error("bundle's registry is not anchored: {0}")]
    NotAnchored(String),
    #[error("bundle's registry is not in force: {0}")]
    RegistryNotInForce(String),
}

/// How old a status statement may be unless the verifier says otherwise: a node's default
/// (`recognition.max_status_age_ms`).
pub const DEFAULT_MAX_STATUS_AGE_MS: i64 = 600_000;

/// How far the bundle's export time may be ahead of the time of judgement (clock skew).
const MAX_EXPORT_SKEW_MS: i64 = 300_000;

impl BundleError {
    pub fn reason(&self) -> Reason {
        match self {
            BundleError::Invalid(_) => Reason::BundleInvalid,
            BundleError::NotAnchored(_) => Reason::RegistryNotAnchored,
            BundleError::RegistryNotInForce(_) => Reason::RegistryExpired,
        }
    }
}

fn invalid(m: impl Into<String>) -> BundleError {
    BundleError::Invalid(m.into())
}

/// The outcome of an offline check.
#[derive(Debug, Clone)]
pub struct OfflineCheck {
    pub verdict: Verdict,
    /// The signed record the verdict is on.
    pub record: Envelope,
    pub exporting_zone: String,
    /// The zone the bundle was exported for (its agreements are those to that zone).
    pub bundle_recognising_zone: String,
    pub exported_at_ms: UnixMillis,
    pub registry_version: u64,
    pub agreements: usize,
    pub max_status_age_ms: i64,
}

/// What the verifier brings.
#[derive(Debug, Clone, Copy)]
pub struct OfflineInputs<'a> {
    /// An authority key id the verifier trusts; it must have signed the bundle's registry.
    pub anchor: &'a KeyId,
    pub recognising_zone: &'a ZoneId,
    /// The time to judge at (usually now).
    pub at: UnixMillis,
    /// The oldest status statement the verifier accepts (default
    /// [`DEFAULT_MAX_STATUS_AGE_MS`]); the bundle's own bound can only narrow it.
    pub max_status_age_ms: Option<i64>,
    /// The oldest registry version the verifier accepts (it may know of a newer one that
    /// revoked a key or a zone): an older bundle registry is not anchored.
    pub min_registry_version: Option<u64>,
}

pub fn verify_bundle(bytes: &[u8], inputs: OfflineInputs<'_>) -> Result<OfflineCheck, BundleError> {
    let outer = Envelope::decode(bytes).map_err(|e| invalid(format!("not a signed bundle: {e}")))?;
    let bundle: VerificationBundle =
        envelope::decode_payload(&outer, PayloadType::VERIFICATION_BUNDLE).map_err(|e| invalid(e.to_string()))?;
    let registry = Registry::parse(bundle.registry.clone().ok_or_else(|| invalid("no registry"))?)
        .map_err(|e| invalid(format!("registry: {e}")))?;
    check_anchor(&registry, inputs.anchor)?;
    if let Some(min) = inputs.min_registry_version
        && registry.version() < min
    {
        return Err(BundleError::NotAnchored(format!(
            "registry v{} is older than v{min}, the oldest this verifier accepts",
            registry.version()
        )));
    }
    let doc = registry.document();
    if inputs.at < doc.valid_from_ms || inputs.at >= doc.valid_until_ms {
        return Err(BundleError::RegistryNotInForce(format!(
            "registry v{} is valid from {} until {}, not at the time of judgement",
            registry.version(),
            ftz_core::time::format_ms(doc.valid_from_ms),
            ftz_core::time::format_ms(doc.valid_until_ms)
        )));
    }
    if bundle.exported_at_ms > inputs.at.saturating_add(MAX_EXPORT_SKEW_MS) {
        return Err(invalid("the bundle says it was exported after the time of judgement"));
    }

    let exporting = ZoneId::new(bundle.exporting_zone.clone()).map_err(|e| invalid(format!("exporting zone: {e}")))?;
    let zone = registry
        .zone(&exporting)
        .ok_or_else(|| invalid(format!("exporting zone {exporting} is not in the registry")))?;
    envelope::verify(&outer, PayloadType::VERIFICATION_BUNDLE, |id| zone.key_valid_at(KeyPurpose::Node, id, inputs.at))
        .map_err(|e| invalid(format!("signature of the exporting node ({exporting}): {e}")))?;

    let mut agreements = Vec::new();
    for (i, env) in bundle.agreements.iter().enumerate() {
        let a = Agreement::parse(env.clone()).map_err(|e| invalid(format!("agreement {i}: {e}")))?;
        check_signatures(&a, &registry, a.doc.valid_from_ms.max(0))
            .map_err(|e| invalid(format!("agreement {}: {e}", a.id())))?;
        agreements.push(a);
    }
    let rws = bundle.record.as_ref().ok_or_else(|| invalid("no record"))?;
    let record = rws.record.as_ref().ok_or_else(|| invalid("no record"))?;
    let verifiers = inputs.max_status_age_ms.unwrap_or(DEFAULT_MAX_STATUS_AGE_MS);
    let max_status_age_ms =
        if bundle.max_status_age_ms > 0 { verifiers.min(bundle.max_status_age_ms) } else { verifiers };
    let ctx = VerdictContext {
        registry: &registry,
        agreements: &agreements,
        recognising_zone: inputs.recognising_zone,
        now: inputs.at,
        max_status_age_ms,
        max_clock_skew_ms: 300_000,
    };
    let verdict = evaluate(record, rws.status.as_ref(), &ctx);
    Ok(OfflineCheck {
        verdict,
        record: record.clone(),
        exporting_zone: exporting.to_string(),
        bundle_recognising_zone: bundle.recognising_zone.clone(),
        exported_at_ms: bundle.exported_at_ms,
        registry_version: registry.version(),
        agreements: agreements.len(),
        max_status_age_ms,
    })
}

/// The registry must be signed by at least its quorum of the authorities it lists (valid when
/// it was issued), the anchor among them.
fn check_anchor(registry: &Registry, anchor: &KeyId) -> Result<(), BundleError> {
    let issued = registry.document().issued_at_ms;
    let key = |id: &KeyId| {
        registry
            .find_key(id)
            .filter(|(_, k)| k.purpose == KeyPurpose::Authority && k.valid_at(issued))
            .map(|(z, k)| (z.id.clone(), k.key))
    };
    // A signature that fails is tampering (the bundle is invalid); too few or the wrong signers
    // is a registry the verifier does not trust (not anchored).
    let signers =
        match envelope::verify(registry.envelope(), PayloadType::FEDERATION_REGISTRY, |id| key(id).map(|(_, k)| k)) {
            Ok(s) => s,
            Err(envelope::EnvelopeError::NoTrustedSignature) => Vec::new(),
            Err(e) => return Err(invalid(format!("registry signatures: {e}"))),
        };
    let zones: BTreeSet<ZoneId> = signers.iter().filter_map(|id| key(id).map(|(z, _)| z)).collect();
    if zones.len() < registry.quorum() as usize {
        return Err(BundleError::NotAnchored(format!(
            "registry v{} is signed by {} zone authorities, its quorum is {}",
            registry.version(),
            zones.len(),
            registry.quorum()
        )));
    }
    if !signers.contains(anchor) {
        return Err(BundleError::NotAnchored(format!(
            "registry v{} is not signed by the anchor {anchor}",
            registry.version()
        )));
    }
    Ok(())
}

impl ftz_core::Refusal for BundleError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}
