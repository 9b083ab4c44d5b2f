//! The consumer's promise kept: what this node received under a policy is deleted when the
//! policy's retention is up, at start-up and then every interval while the node runs. Each
//! deletion is recorded in the store for the audit log.

use std::{sync::Arc, time::Duration};

use crate::{audit::AuditLog, core::Core};

/// How often the background task looks for due data.
pub(crate) const INTERVAL: Duration = Duration::from_secs(30);

/// Deletes everything due now; returns how many items.
pub(crate) async fn run_once(core: &Core, log: &AuditLog) -> usize {
    let (store, now) = (core.store.clone(), core.now_ms());
    match tokio::task::spawn_blocking(move || store.delete_due(now, 10_000)).await {
        Ok(Ok(done)) => {
            for d in &done {
                tracing::info!(what = %d.what, deadline = d.deadline_ms, "retention: deleted");
                let leaf = ftz_audit::leaf::Leaf::Deletion {
                    at_ms: d.deleted_at_ms,
                    what: d.what.clone(),
                    deadline_ms: d.deadline_ms,
                };
                if let Err(e) = log.append(&leaf, None).await {
                    tracing::error!(what = %d.what, "a deletion could not be logged: {e}");
                }
            }
            done.len()
        }
        Ok(Err(e)) => {
            tracing::error!("retention: {e}");
            0
        }
        Err(e) => {
            tracing::error!("retention task failed: {e}");
            0
        }
    }
}

/// Deletes what comes due, every [`INTERVAL`] while the node runs (the node ran it once at start
/// itself, before serving).
pub(crate) fn spawn(core: Arc<Core>, log: AuditLog) {
    let c = core.clone();
    core.tasks.every_after(INTERVAL, move || {
        let (core, log) = (c.clone(), log.clone());
        async move {
            run_once(&core, &log).await;
        }
    });
}
