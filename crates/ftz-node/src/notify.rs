//! Background retries of messages to other zones (revocation notices, policy revocations):
//! exponential backoff from 1 s up to a minute, a bounded number of attempts, and they stop
//! when the node stops. Not durable: a restart forgets them (see docs/architecture.md).

use std::{future::Future, sync::Arc, time::Duration};

use crate::{error::ApiError, state::NodeState};

pub(crate) fn spawn_retries<F, Fut>(state: Arc<NodeState>, what: String, attempt: F)
where
    F: Fn(Arc<NodeState>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), ApiError>> + Send,
{
    state.clone().spawn(async move {
        let mut shutdown = state.shutdown.clone();
        let mut delay = Duration::from_secs(1);
        for _ in 0..8 {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(delay) => {}
            }
            match attempt(state.clone()).await {
                Ok(()) => {
                    tracing::info!("{what}: delivered on retry");
                    return;
                }
                Err(e) => tracing::debug!("{what}: retry failed: {e}"),
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        tracing::warn!("{what}: gave up after repeated failures");
    });
}
