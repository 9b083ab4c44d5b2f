//! Refusals over HTTP: RFC 9457 problem details carrying the same stable reason code a gRPC
//! caller gets, with the HTTP status the gRPC code maps to (`ftz_client::http_status_for`).

use bytes::Bytes;
use ftz_core::Reason;
use http_body_util::Full;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

use crate::error::ApiError;

/// One refusal as the JSON API answers it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub status: u16,
    /// The stable reason code (`NO_POLICY`), or the gRPC code's name when a status carries none.
    pub reason: String,
    pub detail: String,
    /// The ErrorInfo metadata (`peer_reason`, `policy_id`, `retry_after_ms`, ...).
    pub metadata: Map<String, Value>,
    pub retry_after_ms: Option<u64>,
}

impl Problem {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self::from(ApiError::new(reason, detail))
    }

    /// A refusal of the HTTP layer itself, before any gRPC method: a wrong method, an unknown
    /// path, a body too large or not JSON, a deadline.
    pub(crate) fn http(r: ftz_client::HttpRefusal, detail: impl Into<String>) -> Self {
        Self {
            status: r.http_status(),
            reason: r.code().into(),
            detail: detail.into(),
            metadata: Map::new(),
            retry_after_ms: None,
        }
    }

    pub(crate) fn from_status(s: &Status) -> Self {
        let reason =
            ftz_client::reason_of(s).map(|r| r.as_str().to_string()).unwrap_or_else(|| code_name(s.code()).to_string());
        let details = tonic_types::StatusExt::get_error_details(s);
        let metadata = details
            .error_info()
            .map(|i| i.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
            .unwrap_or_default();
        let retry_after_ms = details.retry_info().and_then(|r| r.retry_delay).map(|d| d.as_millis() as u64);
        Self {
            status: ftz_client::http_status_for(s.code()),
            reason,
            detail: s.message().to_string(),
            metadata,
            retry_after_ms,
        }
    }

    pub(crate) fn body(&self) -> Value {
        let mut v = json!({
            "type": format!("urn:ftz:reason:{}", self.reason),
            "title": self.reason,
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
        });
        if !self.metadata.is_empty() {
            v["metadata"] = Value::Object(self.metadata.clone());
        }
        v
    }

    pub(crate) fn into_response(self) -> http::Response<Full<Bytes>> {
        let mut b = http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/problem+json");
        if let Some(ms) = self.retry_after_ms {
            b = b.header(http::header::RETRY_AFTER, ms.div_ceil(1000).max(1).to_string());
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        b.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        Self::from_status(&Status::from(e))
    }
}

/// The canonical name of a gRPC code (`PERMISSION_DENIED`).
pub(crate) fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_its_reason_status_and_hint() {
        let p = Problem::from(ApiError::new(Reason::RateLimited, "slow down").retry_after(1500));
        assert_eq!((p.status, p.reason.as_str(), p.retry_after_ms), (429, "RATE_LIMITED", Some(1500)));
        let body = p.clone().body();
        assert_eq!(body["type"], "urn:ftz:reason:RATE_LIMITED");
        assert_eq!(body["detail"], "slow down");
        let r = p.into_response();
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "2");
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/problem+json");
        let plain = Problem::from_status(&Status::unimplemented("no such method"));
        assert_eq!((plain.status, plain.reason.as_str()), (501, "UNIMPLEMENTED"));
    }
}
