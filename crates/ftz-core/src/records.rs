//! Certifications and inspection results: field rules, and a decoded view of either kind that
//! the recognition rules and the store work with.

use ftz_proto::{Certification, Envelope, InspectionResult, RecordKind, Verdict};
use thiserror::Error;

use crate::{
    Reason, UnixMillis, ZoneId,
    envelope::{self, EnvelopeError, PayloadType},
    sha256,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record: {0}")]
    Malformed(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl RecordError {
    pub fn reason(&self) -> Reason {
        match self {
            RecordError::Malformed(_) => Reason::RecordMalformed,
            RecordError::Envelope(e) => e.reason(),
        }
    }
}

fn bad(msg: impl Into<String>) -> RecordError {
    RecordError::Malformed(msg.into())
}

/// `[A-Za-z0-9._:-]{1,64}`: record, agreement and lot ids.
pub fn check_id(field: &str, v: &str) -> Result<(), RecordError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(()) } else { Err(bad(format!("{field} {:?} must be 1-64 characters of [A-Za-z0-9._:-]", trunc(v)))) }
}

/// `[A-Z0-9_]{1,64}`: certification types.
pub fn check_type(field: &str, v: &str) -> Result<(), RecordError> {
    let ok =
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    if ok { Ok(()) } else { Err(bad(format!("{field} {:?} must be 1-64 characters of [A-Z0-9_]", trunc(v)))) }
}

/// Printable text of at most `max` bytes (`required`: not empty).
pub fn check_text(field: &str, v: &str, max: usize, required: bool) -> Result<(), RecordError> {
    if required && v.trim().is_empty() {
        return Err(bad(format!("{field} is required")));
    }
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(bad(format!("{field} must be at most {max} bytes of printable text")));
    }
    Ok(())
}

fn trunc(s: &str) -> String {
    s.chars().take(70).collect()
}

const USCC_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// The check character of the first 17 characters of a unified social credit code
/// (GB 32100-2015), or `None` if one of them is not allowed.
pub fn uscc_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (i, c) in first17.bytes().enumerate() {
        let v = USCC_CHARS.iter().position(|x| *x == c)? as u32;
        sum += v * USCC_WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    Some(USCC_CHARS[check as usize] as char)
}

/// A unified social credit code: 18 characters of the allowed set with a correct check character.
pub fn check_uscc(field: &str, v: &str) -> Result<(), RecordError> {
    let ok = v.len() == 18 && v.is_char_boundary(17) && uscc_check_char(&v[..17]) == v[17..].chars().next();
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{field} {:?} is not a unified social credit code (18 characters, GB 32100-2015 check character)",
            trunc(v)
        )))
    }
}

/// 4 to 10 digits.
pub fn check_hs_code(v: &str) -> Result<(), RecordError> {
    if (4..=10).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(bad(format!("hs_code {:?} must be 4 to 10 digits", trunc(v))))
    }
}

pub const MAX_TEST_ITEMS: usize = 256;

/// Checks a certification's fields. `issuing_zone` must already be filled in.
pub fn check_certification(c: &Certification) -> Result<(), RecordError> {
    check_id("record_id", &c.record_id)?;
    ZoneId::new(c.issuing_zone.clone()).map_err(|e| bad(e.to_string()))?;
    check_type("cert_type", &c.cert_type)?;
    check_uscc("holder_uscc", &c.holder_uscc)?;
    check_text("holder_name", &c.holder_name, 256, true)?;
    check_text("scope", &c.scope, 256, true)?;
    check_text("issuing_body", &c.issuing_body, 256, true)?;
    check_text("accreditation_scheme", &c.accreditation_scheme, 64, false)?;
    if c.issued_at_ms <= 0 {
        return Err(bad("issued_at is required"));
    }
    if c.expires_at_ms <= c.issued_at_ms {
        return Err(bad("expires_at must be after issued_at"));
    }
    Ok(())
}

/// Checks an inspection result's fields, including that the overall verdict is PASS exactly
/// when every item passed.
pub fn check_inspection(r: &InspectionResult) -> Result<(), RecordError> {
    check_id("record_id", &r.record_id)?;
    ZoneId::new(r.issuing_zone.clone()).map_err(|e| bad(e.to_string()))?;
    check_id("lot_id", &r.lot_id)?;
    check_hs_code(&r.hs_code)?;
    check_uscc("holder_uscc", &r.holder_uscc)?;
    check_text("laboratory", &r.laboratory, 256, true)?;
    check_text("accreditation_number", &r.accreditation_number, 64, true)?;
    check_text("accreditation_scheme", &r.accreditation_scheme, 64, true)?;
    if r.tested_at_ms <= 0 {
        return Err(bad("tested_at is required"));
    }
    if r.expires_at_ms != 0 && r.expires_at_ms <= r.tested_at_ms {
        return Err(bad("expires_at must be after tested_at (or 0)"));
    }
    if r.items.is_empty() || r.items.len() > MAX_TEST_ITEMS {
        return Err(bad(format!("an inspection result has 1 to {MAX_TEST_ITEMS} test items")));
    }
    for (i, it) in r.items.iter().enumerate() {
        check_text(&format!("items[{i}].name"), &it.name, 128, true)?;
        check_text(&format!("items[{i}].value"), &it.value, 64, true)?;
        check_text(&format!("items[{i}].unit"), &it.unit, 32, false)?;
        check_text(&format!("items[{i}].limit"), &it.limit, 64, false)?;
        if !matches!(Verdict::try_from(it.verdict), Ok(Verdict::Pass | Verdict::Fail)) {
            return Err(bad(format!("items[{i}].verdict must be PASS or FAIL")));
        }
    }
    let all_pass = r.items.iter().all(|it| it.verdict == Verdict::Pass as i32);
    let expected = if all_pass { Verdict::Pass } else { Verdict::Fail };
    if r.overall != expected as i32 {
        return Err(bad(format!("overall verdict must be {} given the items", expected.as_str_name())));
    }
    Ok(())
}

/// A decoded, structurally valid record of either kind (signatures are not checked here).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Certification(Certification),
    Inspection(InspectionResult),
}

impl Record {
    /// Decodes and checks a signed record envelope's payload.
    pub fn from_envelope(env: &Envelope) -> Result<Self, RecordError> {
        match env.payload_type.as_str() {
            PayloadType::CERTIFICATION => {
                let c: Certification = envelope::decode_payload(env, PayloadType::CERTIFICATION)?;
                check_certification(&c)?;
                Ok(Record::Certification(c))
            }
            PayloadType::INSPECTION_RESULT => {
                let r: InspectionResult = envelope::decode_payload(env, PayloadType::INSPECTION_RESULT)?;
                check_inspection(&r)?;
                Ok(Record::Inspection(r))
            }
            other => Err(EnvelopeError::WrongPayloadType {
                expected: format!("{} or {}", PayloadType::CERTIFICATION, PayloadType::INSPECTION_RESULT),
                found: trunc(other),
            }
            .into()),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Certification(_) => RecordKind::Certification,
            Record::Inspection(_) => RecordKind::Inspection,
        }
    }

    pub fn record_id(&self) -> &str {
        match self {
            Record::Certification(c) => &c.record_id,
            Record::Inspection(r) => &r.record_id,
        }
    }

    pub fn issuing_zone(&self) -> &str {
        match self {
            Record::Certification(c) => &c.issuing_zone,
            Record::Inspection(r) => &r.issuing_zone,
        }
    }

    /// When it was signed, as it claims: the issuing key must have been valid then.
    pub fn issued_at_ms(&self) -> UnixMillis {
        match self {
            Record::Certification(c) => c.issued_at_ms,
            Record::Inspection(r) => r.tested_at_ms,
        }
    }

    pub fn expires_at_ms(&self) -> Option<UnixMillis> {
        match self {
            Record::Certification(c) => Some(c.expires_at_ms),
            Record::Inspection(r) => (r.expires_at_ms != 0).then_some(r.expires_at_ms),
        }
    }

    /// The certification type; inspection results have none.
    pub fn record_type(&self) -> Option<&str> {
        match self {
            Record::Certification(c) => Some(&c.cert_type),
            Record::Inspection(_) => None,
        }
    }

    /// What agreements match scope prefixes against: a certification's scope, an inspection
    /// result's HS code.
    pub fn scope(&self) -> &str {
        match self {
            Record::Certification(c) => &c.scope,
            Record::Inspection(r) => &r.hs_code,
        }
    }

    /// The issuing body (certification) or laboratory (inspection result).
    pub fn body(&self) -> &str {
        match self {
            Record::Certification(c) => &c.issuing_body,
            Record::Inspection(r) => &r.laboratory,
        }
    }

    pub fn accreditation_scheme(&self) -> &str {
        match self {
            Record::Certification(c) => &c.accreditation_scheme,
            Record::Inspection(r) => &r.accreditation_scheme,
        }
    }

    pub fn lot_id(&self) -> Option<&str> {
        match self {
            Record::Certification(_) => None,
            Record::Inspection(r) => Some(&r.lot_id),
        }
    }

    pub fn payload_type(&self) -> &'static str {
        match self {
            Record::Certification(_) => PayloadType::CERTIFICATION,
            Record::Inspection(_) => PayloadType::INSPECTION_RESULT,
        }
    }
}

/// What names a record's exact content: SHA-256 of the signed payload.
pub fn record_digest(env: &Envelope) -> [u8; 32] {
    sha256(&env.payload)
}

impl crate::Refusal for RecordError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftz_proto::TestItem;

    pub(crate) fn cert() -> Certification {
        Certification {
            record_id: "SH-AEO-0001".into(),
            issuing_zone: "shanghai".into(),
            cert_type: "AEO_ADVANCED".into(),
            holder_uscc: "9144030071526726XG".into(),
            holder_name: "Example Trading Co., Ltd.".into(),
            scope: "customs".into(),
            issuing_body: "Shanghai Customs".into(),
            accreditation_scheme: String::new(),
            issued_at_ms: 1_790_000_000_000,
            expires_at_ms: 1_890_000_000_000,
        }
    }

    fn inspection() -> InspectionResult {
        InspectionResult {
            record_id: "GD-LAB-7".into(),
            issuing_zone: "guangdong".into(),
            lot_id: "LOT-2026-0042".into(),
            hs_code: "850760".into(),
            items: vec![TestItem {
                name: "lead".into(),
                value: "0.01".into(),
                unit: "%".into(),
                limit: "<= 0.1".into(),
                verdict: Verdict::Pass as i32,
            }],
            overall: Verdict::Pass as i32,
            laboratory: "Guangzhou Battery Test Lab".into(),
            accreditation_number: "CNAS L0001".into(),
            accreditation_scheme: "CNAS".into(),
            tested_at_ms: 1_790_000_000_000,
            expires_at_ms: 0,
            holder_uscc: "9144030071526726XG".into(),
        }
    }

    #[test]
    fn uscc_check_characters() {
        // Published codes: Tencent (Shenzhen) 9144030071526726XG.
        assert_eq!(uscc_check_char("9144030071526726X"), Some('G'));
        assert!(check_uscc("f", "9144030071526726XG").is_ok());
        assert!(check_uscc("f", "9144030071526726XH").is_err());
        assert!(check_uscc("f", "9144030071526726I0").is_err(), "I is not in the alphabet");
        assert!(check_uscc("f", "9144030071526726X").is_err());
        assert!(check_uscc("f", "9144030071526726XGé").is_err());
    }

    #[test]
    fn good_records_pass_and_each_bad_field_is_named() {
        check_certification(&cert()).unwrap();
        check_inspection(&inspection()).unwrap();
        let cases: Vec<(&str, Certification)> = vec![
            ("record_id", Certification { record_id: "bad id".into(), ..cert() }),
            ("zone id", Certification { issuing_zone: "Shanghai".into(), ..cert() }),
            ("cert_type", Certification { cert_type: "aeo".into(), ..cert() }),
            ("holder_uscc", Certification { holder_uscc: "123".into(), ..cert() }),
            ("holder_name", Certification { holder_name: " ".into(), ..cert() }),
            ("expires_at", Certification { expires_at_ms: 1, ..cert() }),
            ("issued_at", Certification { issued_at_ms: 0, ..cert() }),
        ];
        for (field, c) in cases {
            let e = check_certification(&c).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
            assert_eq!(e.reason(), Reason::RecordMalformed);
        }
        let mut r = inspection();
        r.items[0].verdict = Verdict::Fail as i32;
        assert!(check_inspection(&r).unwrap_err().to_string().contains("overall"));
        r.overall = Verdict::Fail as i32;
        check_inspection(&r).unwrap();
        let r = InspectionResult { hs_code: "85a7".into(), ..inspection() };
        assert!(check_inspection(&r).unwrap_err().to_string().contains("hs_code"));
        let r = InspectionResult { items: vec![], ..inspection() };
        assert!(check_inspection(&r).is_err());
    }

    #[test]
    fn records_decode_from_envelopes() {
        let (k, _) = crate::SigningKey::generate().unwrap();
        let env = envelope::seal(PayloadType::CERTIFICATION, &cert(), &[&k]);
        let rec = Record::from_envelope(&env).unwrap();
        assert_eq!(rec.kind(), RecordKind::Certification);
        assert_eq!(rec.record_type(), Some("AEO_ADVANCED"));
        assert_eq!(rec.scope(), "customs");
        let env = envelope::seal(PayloadType::INSPECTION_RESULT, &inspection(), &[&k]);
        let rec = Record::from_envelope(&env).unwrap();
        assert_eq!((rec.kind(), rec.scope(), rec.lot_id()), (RecordKind::Inspection, "850760", Some("LOT-2026-0042")));
        assert_eq!(rec.expires_at_ms(), None);
        let other = envelope::seal(PayloadType::PING_ANSWER, &cert(), &[&k]);
        assert_eq!(Record::from_envelope(&other).unwrap_err().reason(), Reason::WrongPayloadType);
    }
}
