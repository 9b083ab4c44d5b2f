//! The one place where domain errors become gRPC statuses, and statuses become reasons again.
//!
//! Every refusal carries a fitting `tonic::Code` and, in the status details, a
//! `google.rpc.ErrorInfo` with the stable reason code (domain `ftz.exchange`), so a client can
//! branch on the reason without parsing messages. The message is for humans and never contains
//! key material.

use std::collections::HashMap;

use ftz_core::{Reason, Refusal, reason::DOMAIN};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A refusal: a reason code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    /// Extra facts for the ErrorInfo metadata (e.g. `peer_reason`).
    pub metadata: Vec<(String, String)>,
    /// When the caller may try again (RATE_LIMITED), sent as a google.rpc.RetryInfo.
    pub retry_after_ms: Option<i64>,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), metadata: Vec::new(), retry_after_ms: None }
    }

    pub fn with_meta(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.push((key.to_string(), value.into()));
        self
    }

    pub fn retry_after(mut self, ms: i64) -> Self {
        self.retry_after_ms = Some(ms.max(1));
        self.metadata.push(("retry_after_ms".into(), ms.max(1).to_string()));
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Reason::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::Internal, message)
    }

    pub fn code(&self) -> Code {
        code_for(self.reason)
    }
}

/// The gRPC code for each reason. Exhaustive on purpose: a new reason does not compile until
/// someone decides its code.
pub fn code_for(reason: Reason) -> Code {
    use Reason::*;
    match reason {
        NoClientCertificate
        | BadCertificateIdentity
        | UnknownZone
        | UntrustedCertificate
        | ZoneNotValid
        | CertificateRevoked => Code::Unauthenticated,
        NotAPeer | NotAUser | ForeignUser | RoleNotAllowed | MethodNotAllowed | ZoneMismatch => Code::PermissionDenied,
        NoTrustedSignature | RegistryUnderQuorum | RegistryAnchorMismatch => Code::PermissionDenied,
        WrongPayloadType | MalformedSignature | DuplicateSignature | BadSignature | MalformedPayload
        | RegistryMalformed | InvalidArgument | MalformedRequest => Code::InvalidArgument,
        RegistryOlderVersion
        | RegistryVersionConflict
        | RegistryExpired
        | RegistryNotYetValid
        | RegistryWrongFederation
        | RegistryOmitsOwnZone
        | NoRegistry
        | StaleRequest
        | PeerAnswerInvalid
        | PeerRefused => Code::FailedPrecondition,
        PeerUnavailable | StatusUnavailable | LogBehindWitnesses => Code::Unavailable,
        NoSuchZone | RecordNotFound => Code::NotFound,
        NoPolicy | PolicyRevoked | PurposeNotAllowed | NegativeList | FieldNotAllowed | OnwardTransfer
        | PolicyUnderSigned => Code::PermissionDenied,
        PolicyExpired | GroupTooSmall | PolicyUnknownZone | PolicyNotForThisZone | PolicyOlderVersion
        | PolicyChainBroken => Code::FailedPrecondition,
        BudgetExhausted | RateLimited | OutboxFull => Code::ResourceExhausted,
        CheckpointInvalid | TransferInvalid => Code::InvalidArgument,
        WitnessConflict | Equivocation => Code::FailedPrecondition,
        EntryNotFound => Code::NotFound,
        PolicyMalformed | RowInvalid => Code::InvalidArgument,
        RecordConflict => Code::AlreadyExists,
        RecordMalformed | StatusInvalid | AgreementMalformed | BundleInvalid => Code::InvalidArgument,
        IssuingZoneUnknown | IssuerKeyUnknown | IssuerKeyNotValid | AgreementUnderSigned | RegistryNotAnchored => {
            Code::PermissionDenied
        }
        RecordNotOwn
        | NoIssuingKey
        | IssuingKeyNotListed
        | RecordExpired
        | RecordRevoked
        | StatusStale
        | NoAgreement
        | NotCovered
        | AgreementExpired
        | AgreementUnknownZone
        | AgreementNotForThisZone
        | AgreementOlderVersion => Code::FailedPrecondition,
        Internal | StoreFailure => Code::Internal,
    }
}

/// The HTTP status of a gRPC code, for the JSON API's problem details (the mapping gRPC
/// gateways use, so that HTTP clients back off, retry or give up as gRPC clients would).
pub fn http_status_for(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// The JSON API's own refusals, made before any gRPC method is reached (so they have no
/// reason of the domain): stable like the reasons, listed in `docs/reason-codes.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRefusal {
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    DeadlineExceeded,
    CrossOrigin,
}

impl HttpRefusal {
    pub const ALL: [HttpRefusal; 6] = [
        HttpRefusal::NotFound,
        HttpRefusal::MethodNotAllowed,
        HttpRefusal::PayloadTooLarge,
        HttpRefusal::UnsupportedMediaType,
        HttpRefusal::DeadlineExceeded,
        HttpRefusal::CrossOrigin,
    ];

    /// The code in the problem's `reason`.
    pub fn code(self) -> &'static str {
        match self {
            HttpRefusal::NotFound => "NOT_FOUND",
            HttpRefusal::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            HttpRefusal::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            HttpRefusal::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            HttpRefusal::DeadlineExceeded => "DEADLINE_EXCEEDED",
            HttpRefusal::CrossOrigin => "CROSS_ORIGIN",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            HttpRefusal::NotFound => 404,
            HttpRefusal::MethodNotAllowed => 405,
            HttpRefusal::PayloadTooLarge => 413,
            HttpRefusal::UnsupportedMediaType => 415,
            HttpRefusal::DeadlineExceeded => 504,
            HttpRefusal::CrossOrigin => 403,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            HttpRefusal::NotFound => "No API route has this path (they are listed in `/api/v1/openapi.json`).",
            HttpRefusal::MethodNotAllowed => "The route takes POST (and GET for methods that only read).",
            HttpRefusal::PayloadTooLarge => "The body is over `limits.max_message_bytes`.",
            HttpRefusal::UnsupportedMediaType => {
                "A POST body must be `application/json` (which another site's form cannot send)."
            }
            HttpRefusal::DeadlineExceeded => "The request took longer than `limits.request_timeout_ms`.",
            HttpRefusal::CrossOrigin => {
                "A POST sent by a page of another origin (`Origin` or `Sec-Fetch-Site`): the browser's client certificate acts only for the node's own pages (CSRF)."
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let metadata: HashMap<String, String> = e.metadata.into_iter().collect();
        let mut details = ErrorDetails::with_error_info(e.reason.as_str(), DOMAIN, metadata);
        if let Some(ms) = e.retry_after_ms {
            details.set_retry_info(Some(std::time::Duration::from_millis(ms.unsigned_abs())));
        }
        Status::with_error_details(code_for(e.reason), e.message, details)
    }
}

/// A metadata value of an ftz status's ErrorInfo.
pub fn status_meta(status: &Status, key: &str) -> Option<String> {
    status.get_error_details().error_info().filter(|i| i.domain == DOMAIN).and_then(|i| i.metadata.get(key).cloned())
}

/// Every layer's error that names its reason (`ftz_core::Refusal`): the registry rules, records,
/// envelopes, agreements, policies, certificates, the store. A store failure or an internal
/// error is also written to the log, with its own text, which the caller does not see.
impl<E: Refusal> From<E> for ApiError {
    fn from(e: E) -> Self {
        let reason = e.refusal_reason();
        if matches!(reason, Reason::StoreFailure | Reason::Internal) {
            tracing::error!(error = %e, "{reason}");
        }
        ApiError::new(reason, e.public_message())
    }
}

/// The reason code of a status returned by an ftz node, if it carries one.
pub fn reason_of(status: &Status) -> Option<Reason> {
    status.get_error_details().error_info().filter(|i| i.domain == DOMAIN).and_then(|i| Reason::from_code(&i.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_a_status() {
        for r in Reason::ALL {
            let status: Status = ApiError::new(*r, "why").into();
            assert_eq!(status.code(), code_for(*r));
            assert_eq!(reason_of(&status), Some(*r));
            assert_eq!(status.message(), "why");
        }
        assert_eq!(reason_of(&Status::internal("plain")), None);
    }

    /// docs/reason-codes.md is generated from the codes, their gRPC codes and their
    /// descriptions; it must be current. `FTZ_UPDATE_DOCS=1 cargo test -p ftz-client reason_codes`
    /// rewrites it.
    #[test]
    fn reason_codes_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reason-codes.md");
        let mut doc = String::from(
            "# Reason codes\n\n\
             Every refusal a node returns carries a gRPC status code and, in the status details, a\n\
             `google.rpc.ErrorInfo` with `domain = \"ftz.exchange\"` and one of these stable reason codes.\n\
             Verification verdicts use the same codes for why a record is not authentic, not active or not\n\
             recognised. Codes are never renamed or reused. `ftzctl` prints them as `CODE REASON: message`;\n\
             with `--json` as `{\"error\": {\"code\", \"reason\", \"message\"}}`. The JSON API answers a refusal\n\
             with RFC 9457 problem details (`application/problem+json`: `type` `urn:ftz:reason:<REASON>`,\n\
             `title`, `status`, `detail`, `reason`) and the HTTP status below.\n\n\
             This file is generated by a test (`ftz-client`, `error::tests::reason_codes_doc_is_current`).\n\n\
             | reason | gRPC code | HTTP | meaning |\n|---|---|---|---|\n",
        );
        for r in Reason::ALL {
            let code = format!("{:?}", code_for(*r));
            let mut snake = String::new();
            for (i, ch) in code.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(ch.to_ascii_uppercase());
            }
            let http = http_status_for(code_for(*r));
            doc.push_str(&format!("| `{r}` | `{snake}` | {http} | {} |\n", r.description()));
        }
        doc.push_str(
            "\nThe JSON API's own refusals, made before any gRPC method is reached, in the same problem\n\
             details:\n\n| reason | HTTP | meaning |\n|---|---|---|\n",
        );
        for h in HttpRefusal::ALL {
            doc.push_str(&format!("| `{}` | {} | {} |\n", h.code(), h.http_status(), h.description()));
        }
        if std::env::var_os("FTZ_UPDATE_DOCS").is_some() {
            std::fs::write(path, &doc).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == doc,
            "docs/reason-codes.md is out of date: run FTZ_UPDATE_DOCS=1 cargo test -p ftz-client reason_codes"
        );
    }
}
