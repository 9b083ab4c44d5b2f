//! What every part of a node shares: its zone, clock, store, node key, limits, the registry in
//! force and the background tasks. Nothing else: each capability (agreements, policies, the
//! outbox, witnessing, ...) owns its own state in its own module and is handed this core.

use std::sync::{Arc, RwLock};

use ftz_core::{Clock, Registry, SigningKey, UnixMillis, ZoneId};
use ftz_store::Store;

use crate::{config::Limits, metrics::Metrics, tasks::Tasks};

pub(crate) struct Core {
    pub zone: ZoneId,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    /// Signs status statements, intents, receipts, pings and checkpoints.
    pub node_key: SigningKey,
    pub limits: Limits,
    pub tasks: Tasks,
    /// What the node counts for Prometheus (off without an ops listener).
    pub metrics: Arc<Metrics>,
    /// The registry in force. Readers take a cheap snapshot; installs swap it whole.
    registry: RwLock<Arc<Registry>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("zone", &self.zone).field("node_key", &self.node_key).finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(
        zone: ZoneId,
        clock: Arc<dyn Clock>,
        store: Store,
        node_key: SigningKey,
        limits: Limits,
        registry: Registry,
        tasks: Tasks,
    ) -> Self {
        let metrics = Arc::new(Metrics::off());
        Self { zone, clock, store, node_key, limits, tasks, metrics, registry: RwLock::new(Arc::new(registry)) }
    }

    /// The same, counting into `metrics`.
    pub(crate) fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// A snapshot of the registry in force.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        // A poisoned lock means a panic while swapping an Arc, which cannot leave it half-written.
        self.registry.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a checked, durably stored registry in force (`federation` only).
    pub(crate) fn set_registry(&self, r: Registry) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
    }

    pub(crate) fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// True once the node is shutting down.
    pub(crate) fn stopping(&self) -> bool {
        self.tasks.stopping()
    }
}
