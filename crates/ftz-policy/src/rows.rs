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

/// Bad lines listed before a parse gives up.
pub const MAX_REPORTED: usize = 20;

/// Reads industry rows from CSV text with the header [`FIELDS`], every row checked with
/// [`check_row`]. `first_line` is the line number of the header (1 for a whole file; more for
/// a part of a larger file, so that errors name the line of the file). Every bad line is
/// reported (up to [`MAX_REPORTED`]) with its number; nothing is returned if any line is bad.
pub fn parse_csv(text: &[u8], first_line: u64) -> Result<Vec<IndustryRow>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text);
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(vec![format!("line {first_line}: no header line: {e}")]),
    };
    if header != FIELDS {
        return Err(vec![format!("line {first_line}: the header must be {}", FIELDS.join(","))]);
    }
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = first_line + 1 + i as u64;
        let parsed = rec.map_err(|e| e.to_string()).and_then(|r| {
            if r.len() != FIELDS.len() {
                return Err(format!("{} fields, expected {}", r.len(), FIELDS.len()));
            }
            let num =
                |j: usize| r[j].parse::<i64>().map_err(|_| format!("{} {:?} is not a whole number", FIELDS[j], &r[j]));
            let row = IndustryRow {
                line,
                enterprise_uscc: r[0].to_string(),
                enterprise_name: r[1].to_string(),
                industry_code: r[2].to_string(),
                region: r[3].to_string(),
                period: r[4].to_string(),
                output_value: num(5)?,
                employment: num(6)?,
                capacity: num(7)?,
            };
            check_row(&row)?;
            Ok(row)
        });
        match parsed {
            Ok(row) => rows.push(row),
            Err(e) => {
                bad.push(format!("line {line}: {e}"));
                if bad.len() >= MAX_REPORTED {
                    bad.push("(stopped after this many errors)".into());
                    break;
                }
            }
        }
    }
    if bad.is_empty() { Ok(rows) } else { Err(bad) }
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
