//! Reading proto3 JSON answers and writing what a page shows of them.

use serde_json::Value;

/// A string field ("" when absent).
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An integer field: proto3 JSON writes 64-bit integers as strings, 32-bit ones as numbers.
pub(crate) fn n(v: &Value, key: &str) -> i64 {
    match v.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(x)) => x.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn b(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A repeated field (empty when absent).
pub(crate) fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Milliseconds since the epoch as `2026-12-02 13:45:01` (UTC); "" for 0.
pub(crate) fn time(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    ftz_core::time::format_ms(ms).replace('T', " ").trim_end_matches('Z').chars().take(19).collect()
}

/// A `datetime-local` value (UTC) as milliseconds; None when empty or malformed.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let full = match s.len() {
        10 => format!("{s}T00:00:00Z"),
        16 => format!("{s}:00Z"),
        _ => format!("{s}Z"),
    };
    ftz_core::time::parse_rfc3339(&full)
}

/// Pairs as a query string, each part percent-encoded.
pub(crate) fn query_string(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_json_numbers_and_times_read_back() {
        let v = serde_json::json!({"a": "18446744073709551615", "b": 7, "c": "x"});
        assert_eq!((n(&v, "b"), n(&v, "c"), n(&v, "zz")), (7, 0, 0));
        assert_eq!(time(0), "");
        let ms = parse_time("2026-12-02T13:45").unwrap();
        assert_eq!(time(ms), "2026-12-02 13:45:00");
        assert_eq!(parse_time("2026-12-02"), parse_time("2026-12-02T00:00:00"));
        assert_eq!(parse_time("garbage"), None);
    }
}
