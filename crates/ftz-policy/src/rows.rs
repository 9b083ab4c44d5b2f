//! Industry data rows: the fields, their checks, and reading a field by name.

use ftz_core::records::{check_text, check_uscc};
use ftz_proto::IndustryRow;

/// Every field of a row, in CSV column order.
pub const FIELDS: [&str; 8] = [
    "enterprise_uscc",
    "enterprise_name",
    "industry_code",
    "region",
    "period",
    "output_value",
    "employment",
    "capacity",
];

/// The numeric fields an aggregate may sum or average.
pub const METRICS: [&str; 3] = ["output_value", "employment", "capacity"];

pub fn is_field(f: &str) -> bool {
    FIELDS.contains(&f)
}

pub fn is_metric(f: &str) -> bool {
    METRICS.contains(&f)
}

/// A row's field as text.
pub fn field(row: &IndustryRow, name: &str) -> Option<String> {
    Some(match name {
        "enterprise_uscc" => row.enterprise_uscc.clone(),
        "enterprise_name" => row.enterprise_name.clone(),
        "industry_code" => row.industry_code.clone(),
        "region" => row.region.clone(),
        "period" => row.period.clone(),
        "output_value" => row.output_value.to_string(),
        "employment" => row.employment.to_string(),
        "capacity" => row.capacity.to_string(),
        _ => return None,
    })
}

pub fn metric(row: &IndustryRow, name: &str) -> Option<i64> {
    match name {
        "output_value" => Some(row.output_value),
        "employment" => Some(row.employment),
        "capacity" => Some(row.capacity),
        _ => None,
    }
}

/// `2026`, `2026-Q1`..`2026-Q4`, or `2026-01`..`2026-12`.
pub fn check_period(p: &str) -> bool {
    let b = p.as_bytes();
    let year = |s: &[u8]| s.len() == 4 && s.iter().all(u8::is_ascii_digit);
    match b.len() {
        4 => year(b),
        7 if b[4] == b'-' && b[5] == b'Q' => year(&b[..4]) && (b'1'..=b'4').contains(&b[6]),
        7 if b[4] == b'-' => year(&b[..4]) && matches!(p[5..].parse::<u8>(), Ok(1..=12)),
        _ => false,
    }
}

/// Checks one row; the error names the field (the caller adds the line).
pub fn check_row(row: &IndustryRow) -> Result<(), String> {
    check_uscc("enterprise_uscc", &row.enterprise_uscc).map_err(|e| e.to_string())?;
    check_text("enterprise_name", &row.enterprise_name, 256, true).map_err(|e| e.to_string())?;
    let ic = &row.industry_code;
    let ic_ok = (2..=5).contains(&ic.len())
        && ic.as_bytes()[0].is_ascii_uppercase()
        && ic.bytes().skip(1).all(|c| c.is_ascii_digit());
    if !ic_ok {
        return Err(format!("industry_code {ic:?} must be a GB/T 4754 code like C3841"));
    }
    if row.region.len() != 6 || !row.region.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("region {:?} must be a 6-digit administrative division code", row.region));
    }
    if !check_period(&row.period) {
        return Err(format!("period {:?} must be YYYY, YYYY-Qn or YYYY-MM", row.period));
    }
    for m in METRICS {
        if metric(row, m).is_some_and(|v| v < 0) {
            return Err(format!("{m} must not be negative"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row() -> IndustryRow {
        IndustryRow {
            line: 2,
            enterprise_uscc: "91310115MA1H7XQ200".into(),
            enterprise_name: "Pudong Precision".into(),
            industry_code: "C4011".into(),
            region: "310115".into(),
            period: "2026-Q3".into(),
            output_value: 12_000_000,
            employment: 85,
            capacity: 4000,
        }
    }

    #[test]
    fn rows_and_their_fields() {
        check_row(&row()).unwrap();
        assert_eq!(field(&row(), "period").as_deref(), Some("2026-Q3"));
        assert_eq!(metric(&row(), "employment"), Some(85));
        assert_eq!(field(&row(), "nope"), None);
        for (bad, what) in [
            (IndustryRow { enterprise_uscc: "x".into(), ..row() }, "enterprise_uscc"),
            (IndustryRow { industry_code: "4011".into(), ..row() }, "industry_code"),
            (IndustryRow { region: "31".into(), ..row() }, "region"),
            (IndustryRow { period: "2026-Q5".into(), ..row() }, "period"),
            (IndustryRow { period: "2026-13".into(), ..row() }, "period"),
            (IndustryRow { employment: -1, ..row() }, "employment"),
        ] {
            assert!(check_row(&bad).unwrap_err().contains(what), "{what}");
        }
        for ok in ["2026", "2026-Q1", "2026-12"] {
            assert!(check_period(ok), "{ok}");
        }
    }
}
