//! The ftz-exchange zone node.
//!
//! A node serves its zone's users and the other zones' nodes over gRPC with mutual TLS, keeps
//! its state in an embedded store, and trusts exactly the federation its registry describes.
//! Start one with [`start`]; the `ftz-node` binary is a thin wrapper around [`process::main`].
//!
//! The public surface is what a user of the daemon needs: its configuration, how to start and
//! stop it, its errors, the process's main, and the audit log's appender for tools that build
//! a log directly (the benchmark). Everything else is private; `docs/architecture.md` shows how
//! the modules are layered (checked by `layering::tests`).

#![forbid(unsafe_code)]

// Layer 0: configuration, logging, TLS of the listener, the error type, per-caller rates.
mod caller_rate;
pub mod config;
mod conn;
mod error;
mod metrics;
pub mod telemetry;
mod tls;
// Layer 1-2: background tasks, the shared core.
mod core;
mod listen;
mod tasks;
// Layer 3: records, peer channels, the audit log.
mod audit;
mod backup;
mod peers;
mod records;
// Layer 4: capabilities that own their state.
mod agreements;
mod federation;
mod outbox;
mod ping;
mod restored;
mod retention;
mod users;
mod witness;
// Layer 5-6: exchange policies, transfers.
mod policies;
mod replicas;
mod transfer;
// Layer 7: the roles of an exchange.
mod industry;
mod issuing;
mod provider;
mod recognition;
// Layer 8-12: authentication, the composition root, the RPC layer, the server, the process.
mod auth;
mod gateway;
mod node;
mod ops;
pub mod process;
mod server;
mod services;
// `ftz-node restore`: a store written from a backup file, before any node runs on it.
pub mod restore;
// `ftz-node migrate-store`: a zone's sled store copied into PostgreSQL and verified.
pub mod migrate_store;

#[cfg(test)]
mod layering;
#[cfg(test)]
mod testkit;

pub use audit::{AuditLog, Placed, tree::TreeReader};
pub use config::NodeConfig;
pub use node::{StartError, open_store};
pub use server::{NodeOptions, RunningNode, start};
