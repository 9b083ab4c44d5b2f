//! What both ends of a call to an ftz-exchange node need, and nothing of the daemon: the error
//! vocabulary on the wire in both directions (a domain refusal to a gRPC status with its stable
//! reason code, and a status back to its reason), the TLS verifier that checks a node is the
//! zone it should be, and client profiles and channels.
//!
//! `ftzctl` and the tests call nodes with it; a node calls other zones' nodes with it. It has no
//! store and no server, so a pure client (`ftzctl` without its `dev` feature) links neither.

#![forbid(unsafe_code)]

pub mod error;
pub mod https;
pub mod profile;
pub mod tls;

pub use error::{ApiError, HttpRefusal, code_for, http_status_for, reason_of, status_meta};
pub use profile::{ClientError, ClientProfile, channel};
pub use tls::ExpectedServer;
