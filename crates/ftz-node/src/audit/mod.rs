//! This node's verifiable audit log.
//!
//! - [`plan`]: where each leaf of a batch goes and which hashes it completes (pure);
//! - [`tree`]: how the tree is stored (tiles, upper levels cached in memory);
//! - [`log`]: the appender that commits planned batches and answers once they are durable;
//! - [`reader`]: reading the log only as far as it is durable;
//! - [`checkpoints`]: signing checkpoints over durable sizes, checking the signed history at start;
//! - [`gate`]: whether the log may grow (shut after a restore until the witnesses confirm it);
//! - [`events`]: refusals, configuration changes and the node key, logged in one place;
//! - [`auditor`]: the checkpoint history with its cosignatures, another zone's export compared.

pub mod auditor;
pub mod checkpoints;
pub mod events;
pub mod gate;
pub mod log;
pub mod plan;
pub mod reader;
pub mod tree;

pub use log::AuditLog;
pub use plan::Placed;

use ftz_audit::checkpoint::origin;
use ftz_core::ZoneId;

/// The key name of a zone's log (its origin).
pub(crate) fn log_name(zone: &ZoneId) -> String {
    origin(zone.as_str())
}

/// The key name of a zone's witness.
pub(crate) fn witness_name(zone: &ZoneId) -> String {
    format!("ftz/{zone}/witness")
}
