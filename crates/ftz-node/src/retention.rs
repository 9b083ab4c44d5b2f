//! The consumer's promise kept: what this node received under a policy is deleted when the
//! policy's retention is up, at start-up and then every interval while the node runs. Each
//! deletion is recorded in the store for the audit log.

use std::{sync::Arc, time::Duration};

use crate::state::NodeState;

/// How often the background task looks for due data.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Deletes everything due now; returns how many items.
pub async fn run_once(state: &NodeState) -> usize {
    let (store, now) = (state.store.clone(), state.now_ms());
    match tokio::task::spawn_blocking(move || store.delete_due(now, 10_000)).await {
        Ok(Ok(done)) => {
            for d in &done {
                tracing::info!(what = %d.what, deadline = d.deadline_ms, "retention: deleted");
                let leaf = ftz_audit::leaf::Leaf::Deletion {
                    at_ms: d.deleted_at_ms,
                    what: d.what.clone(),
                    deadline_ms: d.deadline_ms,
                };
                if let Err(e) = state.audit.append(&leaf, None).await {
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

pub(crate) fn spawn(state: Arc<NodeState>) {
    state.clone().spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
            run_once(&state).await;
        }
    });
}
