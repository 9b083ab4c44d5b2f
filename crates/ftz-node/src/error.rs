//! Errors inside the node. A refusal is an [`ApiError`] (reason code and message), the one type
//! `ftz_client::error` maps to a gRPC status and back; what can fail while the node starts has
//! typed errors of its own, in the module that loads it.

pub(crate) use ftz_client::ApiError;
pub(crate) use ftz_client::error::{reason_of, status_meta};
