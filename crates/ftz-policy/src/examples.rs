//! Example documents for demos, tests and the documentation: a plausible certification and
//! inspection result, an agreement and its rules, a record policy. Only protobuf values: signing
//! them is the caller's business (each authority signs on its own machine).

use ftz_core::UnixMillis;

const DAY_MS: i64 = 86_400_000;

/// A plausible certification for demos and tests: issued a minute before `now`, valid a year.
pub fn sample_certification(id: &str, cert_type: &str, now: UnixMillis) -> ftz_proto::Certification {
    ftz_proto::Certification {
        record_id: id.into(),
        issuing_zone: String::new(),
        cert_type: cert_type.into(),
        holder_uscc: "91310115MA1H7XQ200".into(),
        holder_name: "Pudong Precision Instruments Co., Ltd.".into(),
        scope: "import and export of precision instruments".into(),
        issuing_body: "Shanghai Customs".into(),
        accreditation_scheme: String::new(),
        issued_at_ms: now - 60_000,
        expires_at_ms: now + 365 * DAY_MS,
    }
}

/// A passing inspection result of a lot of lithium cells (HS 850760), tested a minute before `now`.
pub fn sample_inspection(id: &str, lot: &str, now: UnixMillis) -> ftz_proto::InspectionResult {
    use ftz_proto::{TestItem, Verdict};
    ftz_proto::InspectionResult {
        record_id: id.into(),
        issuing_zone: String::new(),
        lot_id: lot.into(),
        hs_code: "850760".into(),
        items: vec![
            TestItem {
                name: "capacity".into(),
                value: "3.2".into(),
                unit: "Ah".into(),
                limit: ">= 3.0".into(),
                verdict: Verdict::Pass as i32,
            },
            TestItem {
                name: "short-circuit".into(),
                value: "no fire".into(),
                unit: String::new(),
                limit: "no fire, no explosion".into(),
                verdict: Verdict::Pass as i32,
            },
        ],
        overall: Verdict::Pass as i32,
        laboratory: "Guangzhou Battery Testing Centre".into(),
        accreditation_number: "CNAS L1234".into(),
        accreditation_scheme: "CNAS".into(),
        tested_at_ms: now - 60_000,
        expires_at_ms: 0,
        holder_uscc: "91440101MA5CQ7Y50F".into(),
    }
}

/// An agreement (version 1) recognising `rule` from `from` in `to`, in force from a minute
/// before `now` for a day.
pub fn agreement_doc(
    id: &str,
    from: &str,
    to: &str,
    rule: ftz_proto::RecognitionRule,
    now: UnixMillis,
) -> ftz_proto::RecognitionAgreement {
    ftz_proto::RecognitionAgreement {
        agreement_id: id.into(),
        version: 1,
        from_zone: from.into(),
        to_zone: to.into(),
        rules: vec![rule],
        valid_from_ms: now - 60_000,
        valid_until_ms: now + 86_400_000,
    }
}

/// A rule recognising certifications of these types, any scope, body or scheme.
pub fn certification_rule(types: &[&str]) -> ftz_proto::RecognitionRule {
    ftz_proto::RecognitionRule {
        kind: ftz_proto::RecordKind::Certification as i32,
        record_types: types.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// A rule recognising every inspection result accredited under `scheme`.
pub fn inspection_rule(scheme: &str) -> ftz_proto::RecognitionRule {
    ftz_proto::RecognitionRule {
        kind: ftz_proto::RecordKind::Inspection as i32,
        accreditation_schemes: vec![scheme.to_string()],
        ..Default::default()
    }
}

/// A policy letting records of `class` go from `provider` to `consumer` for `purposes`:
/// 30 days retention, no onward transfer, 600 requests a minute, valid a year from `now`.
pub fn record_policy(
    id: &str,
    provider: &str,
    consumer: &str,
    class: ftz_proto::DataClass,
    purposes: &[&str],
    now: UnixMillis,
) -> ftz_proto::ExchangePolicy {
    ftz_proto::ExchangePolicy {
        policy_id: id.into(),
        version: 1,
        previous_digest: Vec::new(),
        provider_zone: provider.into(),
        consumer_zones: vec![consumer.into()],
        data_class: class as i32,
        filter: None,
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        field_rules: Vec::new(),
        aggregation: None,
        retention_ms: 30 * DAY_MS,
        onward_zones: Vec::new(),
        rate_limit: Some(ftz_proto::RateLimit { max_requests: 600, per_ms: 60_000 }),
        valid_from_ms: now - 60_000,
        valid_until_ms: now + 365 * DAY_MS,
    }
}
