//! Waiting for a node's outbox to drain: what the demo and the fault tests do after a zone
//! comes back.

use std::time::Duration;

use ftz_proto::{ListOutboxRequest, admin_client::AdminClient};
use tonic::transport::Channel;

/// Polls `admin`'s node until its outbox is empty, or fails after `timeout` saying how many
/// messages are still queued. A failed call (the node restarting) counts as not yet drained.
pub async fn drained(admin: &mut AdminClient<Channel>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = admin.list_outbox(ListOutboxRequest { limit: 1 }).await.map(|r| r.into_inner().total);
        if let Ok(0) = left {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match left {
                Ok(n) => anyhow::anyhow!("{n} message(s) still queued after {timeout:?}"),
                Err(s) => anyhow::anyhow!("the outbox could not be read after {timeout:?}: {s}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
