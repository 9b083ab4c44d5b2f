//! The ftz-exchange zone node.
//!
//! A node serves its zone's users and the other zones' nodes over gRPC with mutual TLS, keeps
//! its state in an embedded store, and trusts exactly the federation its registry describes.
//! Start one with [`server::start`]; the `ftz-node` binary is a thin wrapper around it.

#![forbid(unsafe_code)]

pub mod agreements;
pub mod audit;
pub mod auth;
pub mod caller_rate;
pub mod client;
pub mod config;
pub mod dev;
pub mod error;
pub mod federation;
pub mod industry;
pub mod issuing;
pub mod local;
pub mod local_processes;
pub mod outbox;
pub mod peer_client;
pub mod ping;
pub mod policies;
pub mod process;
pub mod recognition;
pub mod retention;
pub mod server;
pub mod services;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use config::NodeConfig;
pub use error::{ApiError, reason_of};
pub use server::{NodeOptions, RunningNode, StartError, start};
