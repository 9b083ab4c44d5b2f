//! What a replica does to keep up with the other replicas of its node on one PostgreSQL
//! database (docs/scale-out.md). Every replica serves every call; what they share is the
//! database, and what each keeps in memory is a cache of it that must follow what the others
//! write:
//!
//! - the audit log's durable size (and the tree hashes cached for proofs): another replica's
//!   batch is durable once committed, so readers here may see it ([`AuditLog::follow`]); the
//!   appender itself needs nothing from here (it reads the log's truth under the log's lock);
//! - what installs change (registry, agreements, policies, revocations, lists): installs are
//!   serialised in the database (each one a compare-and-swap on what it replaces), and every
//!   replica loads them again within [`FOLLOW_EVERY`] of a change, which it sees as a change of
//!   the database's digest of those rows (one small query);
//! - the outbox's item count, which each replica only counts its own changes to.
//!
//! A poll, not LISTEN/NOTIFY: the digest is exact (a notification can be missed across a
//! reconnect, a poll cannot), and at four queries a second per replica it costs the database
//! nothing worth a second mechanism.

use std::{sync::Arc, time::Duration};

use crate::{
    agreements::Agreements, audit::AuditLog, core::Core, federation::Federation, policies::Policies,
    users::UserRevocations,
};

/// How often a replica looks at what the others changed.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Recount the outbox every this many polls (every few seconds).
const RECOUNT_EVERY: u32 = 20;

/// What a replica reloads when another one installed something.
pub(crate) struct Reloads {
    pub federation: Arc<Federation>,
    pub agreements: Arc<Agreements>,
    pub policies: Arc<Policies>,
    pub users: Arc<UserRevocations>,
}

impl Reloads {
    async fn all(&self) {
        match self.federation.reload().await {
            Ok(Some(version)) => tracing::info!(version, "registry installed by another replica, now in force here"),
            Ok(None) => {}
            Err(e) => tracing::warn!("reloading the registry: {e}"),
        }
        if let Err(e) = self.agreements.reload().await {
            tracing::warn!("reloading agreements: {e}");
        }
        if let Err(e) = self.policies.reload().await {
            tracing::warn!("reloading policies: {e}");
        }
        if let Err(e) = self.users.reload().await {
            tracing::warn!("reloading withdrawn user certificates: {e}");
        }
    }
}

/// Starts following the other replicas, until the node stops.
pub(crate) fn spawn(core: Arc<Core>, log: AuditLog, reloads: Reloads) {
    let reloads = Arc::new(reloads);
    // The digest at start: what this replica loaded.
    let seen = Arc::new(std::sync::Mutex::new(core.store.config_digest().ok().flatten()));
    let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = core.clone();
    core.tasks.every(FOLLOW_EVERY, move || {
        let (core, log, reloads, seen, polls) = (c.clone(), log.clone(), reloads.clone(), seen.clone(), polls.clone());
        async move {
            let n = polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let store = core.store.clone();
            let Ok(polled) = tokio::task::spawn_blocking(move || poll(&store, &log, n)).await else { return };
            let digest = match polled {
                Ok(d) => d,
                Err(e) => return tracing::debug!("following the other replicas: {e}"),
            };
            let changed = {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                let changed = *seen != digest;
                *seen = digest;
                changed
            };
            if changed {
                reloads.all().await;
            }
        }
    });
}

/// One poll: the log followed, the outbox recounted now and then, and the digest of what
/// installs change.
fn poll(store: &ftz_store::Store, log: &AuditLog, n: u32) -> Result<Option<Vec<u8>>, ftz_store::StoreError> {
    log.follow()?;
    if n.is_multiple_of(RECOUNT_EVERY) {
        store.outbox_recount()?;
    }
    store.config_digest()
}
