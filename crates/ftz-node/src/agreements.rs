//! The mutual-recognition agreements installed on this node: loaded at start, installed by the
//! rules of `ftz_policy::agreement` (durable before they take effect), read as a snapshot.

use std::sync::{Arc, RwLock};

use ftz_policy::{
    Agreement,
    agreement::{AgreementDecision, check_install},
};
use ftz_proto::Envelope;
use ftz_store::{Store, StoreError};
use prost::Message;

use crate::{
    audit::{AuditLog, events::log_config},
    core::Core,
    error::ApiError,
};

/// An installed agreement the node cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("installed agreement {id}: {detail}")]
    Unreadable { id: String, detail: String },
}

pub(crate) struct Agreements {
    core: Arc<Core>,
    log: AuditLog,
    set: RwLock<Arc<Vec<Agreement>>>,
    /// Serialises installs.
    lock: tokio::sync::Mutex<()>,
}

/// The agreements in the store, as installed (they were checked then).
pub(crate) fn load(store: &Store) -> Result<Vec<Agreement>, LoadError> {
    let mut out = Vec::new();
    for (id, bytes) in store.agreements()? {
        let bad = |detail: String| LoadError::Unreadable { id: id.clone(), detail };
        let env = Envelope::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
        out.push(Agreement::parse(env).map_err(|e| bad(e.to_string()))?);
    }
    Ok(out)
}

impl Agreements {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, installed: Vec<Agreement>) -> Self {
        Self { core, log, set: RwLock::new(Arc::new(installed)), lock: tokio::sync::Mutex::new(()) }
    }

    /// A snapshot of the installed agreements.
    pub(crate) fn all(&self) -> Arc<Vec<Agreement>> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs `candidate` if the rules allow it; durable before the in-memory set changes.
    /// Returns the agreement and whether exactly it was installed already.
    pub(crate) async fn install(&self, candidate: Agreement) -> Result<(Agreement, bool), ApiError> {
        let core = &self.core;
        let _guard = self.lock.lock().await;
        let current = self.all();
        let installed = current.iter().find(|a| a.id() == candidate.id());
        let registry = core.registry();
        match check_install(&candidate, &registry, &core.zone, installed, core.now_ms())? {
            AgreementDecision::AlreadyInstalled => return Ok((candidate, true)),
            AgreementDecision::Install { signers } => {
                tracing::info!(
                    agreement = candidate.id(),
                    version = candidate.version(),
                    from = %candidate.from,
                    to = %candidate.to,
                    signers = ?signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "recognition agreement installed"
                );
            }
        }
        let bytes = candidate.envelope.encode_to_vec();
        let expected = installed.map(|a| a.envelope.encode_to_vec());
        core.store.write_durably(|s| s.put_agreement(candidate.id(), &bytes, expected.as_deref())).await?;
        let mut next: Vec<Agreement> = current.iter().filter(|a| a.id() != candidate.id()).cloned().collect();
        next.push(candidate.clone());
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        let digest = ftz_core::sha256(&candidate.envelope.payload);
        log_config(core, &self.log, "agreement", candidate.id(), candidate.version(), digest).await;
        Ok((candidate, false))
    }
}
