//! Printing results: readable text by default, one JSON document with `--json`.

use ftz_core::Reason;
use serde_json::{Value, json};

/// How a command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Prints `text` or `value`, according to `fmt`.
pub fn emit(fmt: Format, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
    match fmt {
        Format::Text => print!("{}", text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&value()).unwrap_or_default()),
    }
}

/// A failed call as a JSON object: code, reason, message.
pub fn status_json(s: &tonic::Status) -> Value {
    json!({
        "code": format!("{:?}", s.code()),
        "reason": ftz_client::reason_of(s).map(Reason::as_str),
        "message": s.message(),
    })
}

/// A failed call as one line for humans: `PERMISSION_DENIED ROLE_NOT_ALLOWED: message`.
pub fn status_line(s: &tonic::Status) -> String {
    match ftz_client::reason_of(s) {
        Some(r) => format!("{:?} {r}: {}", s.code(), s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

pub fn time(ms: i64) -> String {
    ftz_core::time::format_ms(ms)
}

/// Parses an RFC 3339 time (`2026-11-27T10:00:00Z`) into Unix milliseconds.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    ftz_core::time::parse_rfc3339(s)
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not an RFC 3339 time like 2026-11-27T10:00:00Z"))
}

/// A verification result for people: the verdict line, then the facts behind it.
pub fn verification_text(v: &ftz_proto::VerificationResult) -> String {
    let status = ftz_proto::RecordStatus::try_from(v.status)
        .map(|s| s.as_str_name().trim_start_matches("RECORD_STATUS_").to_string())
        .unwrap_or_else(|_| "?".into());
    let mut t = format!("{}\n", v.explanation);
    t.push_str(&format!("  record      {} of {} ({})\n", v.record_id, v.issuing_zone, v.source));
    t.push_str(&format!(
        "  authentic   {}\n",
        if v.authentic {
            format!("yes, issuing key {}", v.signing_key_id)
        } else {
            format!("no: {}", v.authenticity_reason)
        }
    ));
    let age = if v.status_as_of_ms > 0 {
        format!(" as of {} ({} old)", time(v.status_as_of_ms), ftz_policy::exchange::age_words(v.status_age_ms))
    } else {
        String::new()
    };
    let why = if v.status_reason.is_empty() { String::new() } else { format!(": {}", v.status_reason) };
    t.push_str(&format!("  status      {status}{why}{age}\n"));
    let rec = if v.recognised {
        if v.agreement_id.is_empty() {
            format!("yes, issued in {} itself", v.recognising_zone)
        } else {
            format!("yes, in {} under agreement {} v{}", v.recognising_zone, v.agreement_id, v.agreement_version)
        }
    } else {
        format!("no, in {}: {}", v.recognising_zone, v.recognition_reason)
    };
    t.push_str(&format!("  recognised  {rec}\n"));
    t
}

pub fn verification_json(v: &ftz_proto::VerificationResult) -> Value {
    json!({
        "valid": v.valid,
        "record_id": v.record_id,
        "issuing_zone": v.issuing_zone,
        "kind": ftz_proto::RecordKind::try_from(v.kind).map(|k| k.as_str_name()).unwrap_or("?"),
        "source": v.source,
        "authentic": v.authentic,
        "authenticity_reason": v.authenticity_reason,
        "signing_key_id": v.signing_key_id,
        "status": ftz_proto::RecordStatus::try_from(v.status).map(|k| k.as_str_name()).unwrap_or("?"),
        "status_reason": v.status_reason,
        "status_as_of_ms": v.status_as_of_ms,
        "status_age_ms": v.status_age_ms,
        "recognising_zone": v.recognising_zone,
        "recognised": v.recognised,
        "agreement_id": v.agreement_id,
        "agreement_version": v.agreement_version,
        "recognition_reason": v.recognition_reason,
        "checked_at_ms": v.checked_at_ms,
        "explanation": v.explanation,
    })
}
