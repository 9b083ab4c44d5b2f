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
        "reason": ftz_node::reason_of(s).map(Reason::as_str),
        "message": s.message(),
    })
}

/// A failed call as one line for humans: `PERMISSION_DENIED ROLE_NOT_ALLOWED: message`.
pub fn status_line(s: &tonic::Status) -> String {
    match ftz_node::reason_of(s) {
        Some(r) => format!("{:?} {r}: {}", s.code(), s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

pub fn time(ms: i64) -> String {
    ftz_core::time::format_ms(ms)
}
