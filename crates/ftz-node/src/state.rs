//! What a running node knows: its zone, keys, store, clock, limits and the registry in force.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use ftz_core::{Clock, Registry, SigningKey, UnixMillis, ZoneId};
use ftz_policy::{Agreement, exchange::PolicySet};
use ftz_store::Store;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{
    audit::{
        AuditLog,
        witness::{Alarms, WitnessSizes},
    },
    config::{AuditConfig, Limits, RecognitionConfig},
    peer_client::PeerClients,
};

pub struct NodeState {
    pub zone: ZoneId,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    pub node_key: SigningKey,
    /// Signs this zone's records; `None`: this node issues nothing.
    pub issuing_key: Option<SigningKey>,
    pub limits: Limits,
    pub recognition: RecognitionConfig,
    pub listen_addr: SocketAddr,
    pub started_at_ms: UnixMillis,
    /// The node's TLS identity, also presented when it calls other zones' nodes.
    pub tls_chain: Vec<CertificateDer<'static>>,
    tls_key: PrivateKeyDer<'static>,
    /// The registry in force. Readers take a cheap snapshot; installs swap it whole.
    registry: RwLock<Arc<Registry>>,
    /// The installed recognition agreements, checked when installed.
    agreements: RwLock<Arc<Vec<Agreement>>>,
    /// Serialises agreement installs.
    pub(crate) agreement_lock: tokio::sync::Mutex<()>,
    /// Installed exchange policies, revocations and the negative list.
    policies: RwLock<Arc<PolicySet>>,
    /// Serialises policy, revocation and negative list installs.
    pub(crate) policy_lock: tokio::sync::Mutex<()>,
    /// Request windows for the policies' rate limits.
    pub(crate) rate: crate::policies::RateWindows,
    /// Keys the pseudonyms of this zone's data, per consumer zone (never leaves the node).
    pub(crate) pseudonym_secret: [u8; 32],
    /// The verifiable audit log of this node.
    pub audit: AuditLog,
    pub audit_config: AuditConfig,
    pub(crate) witness_sizes: WitnessSizes,
    /// Equivocations found by this node as a witness, since it started.
    pub alarms: Alarms,
    /// Background work (retries, checkpoints, sweeps) that shutdown waits for.
    tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
    /// Flips to true when the node shuts down; background work stops.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Serialises registry installs (check, store, swap) so two installs never interleave.
    pub(crate) install_lock: tokio::sync::Mutex<()>,
    pub peers: PeerClients,
    /// Zones the outbox could not reach on its last attempt: a sign of life from one of them
    /// makes its queued messages due at once instead of at their backed-off time.
    pub(crate) unreachable: std::sync::Mutex<std::collections::HashSet<ZoneId>>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("zone", &self.zone)
            .field("node_key", &self.node_key)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

pub(crate) struct NodeParts {
    pub zone: ZoneId,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    pub node_key: SigningKey,
    pub issuing_key: Option<SigningKey>,
    pub limits: Limits,
    pub recognition: RecognitionConfig,
    pub agreements: Vec<Agreement>,
    pub policies: PolicySet,
    pub pseudonym_secret: [u8; 32],
    pub audit: AuditLog,
    pub audit_config: AuditConfig,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub listen_addr: SocketAddr,
    pub tls_chain: Vec<CertificateDer<'static>>,
    pub tls_key: PrivateKeyDer<'static>,
    pub registry: Registry,
}

impl NodeState {
    pub(crate) fn new(p: NodeParts) -> Self {
        let started_at_ms = p.clock.now_ms();
        Self {
            zone: p.zone,
            clock: p.clock,
            store: p.store,
            node_key: p.node_key,
            issuing_key: p.issuing_key,
            limits: p.limits,
            recognition: p.recognition,
            agreements: RwLock::new(Arc::new(p.agreements)),
            agreement_lock: tokio::sync::Mutex::new(()),
            policies: RwLock::new(Arc::new(p.policies)),
            policy_lock: tokio::sync::Mutex::new(()),
            rate: crate::policies::RateWindows::default(),
            pseudonym_secret: p.pseudonym_secret,
            audit: p.audit,
            audit_config: p.audit_config,
            witness_sizes: WitnessSizes::default(),
            alarms: Alarms::default(),
            tasks: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            shutdown: p.shutdown,
            listen_addr: p.listen_addr,
            started_at_ms,
            tls_chain: p.tls_chain,
            tls_key: p.tls_key,
            registry: RwLock::new(Arc::new(p.registry)),
            install_lock: tokio::sync::Mutex::new(()),
            peers: PeerClients::default(),
            unreachable: Default::default(),
        }
    }

    /// A snapshot of the registry in force.
    pub fn registry(&self) -> Arc<Registry> {
        // A poisoned lock means a panic while swapping an Arc, which cannot leave it half-written.
        self.registry.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_registry(&self, r: Registry) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
        self.peers.clear();
    }

    /// A snapshot of the installed agreements.
    pub fn agreements(&self) -> Arc<Vec<Agreement>> {
        self.agreements.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_agreements(&self, a: Vec<Agreement>) {
        *self.agreements.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(a);
    }

    /// Runs background work that shutdown waits for (it must watch `shutdown` to end).
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Finished tasks are reaped here, so the set stays as small as the work in flight.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(f);
    }

    /// Waits for the background work to end (after shutdown was signalled); aborts what is
    /// still running after `grace`.
    pub(crate) async fn join_tasks(&self, grace: std::time::Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("background work did not end in time; aborted");
        }
    }

    /// A snapshot of the installed policies.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_policies(&self, p: PolicySet) {
        *self.policies.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    /// True once the node is shutting down.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    pub(crate) fn tls_key(&self) -> PrivateKeyDer<'static> {
        self.tls_key.clone_key()
    }
}
