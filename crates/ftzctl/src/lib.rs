//! ftzctl: the command line of ftz-exchange. The library part holds what tests also drive:
//! the demo (feature `dev`) and the output helpers.

#![forbid(unsafe_code)]

pub mod audit_dir;
pub mod backup;
#[cfg(feature = "dev")]
pub mod demo;
pub mod outbox;
pub mod output;
pub mod registry_file;
pub mod signed_file;
