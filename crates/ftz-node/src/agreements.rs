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

    /// Loads the installed agreements again (another replica of this node installed one).
    pub(crate) async fn reload(&self) -> Result<(), LoadError> {
        let _guard = self.lock.lock().await;
        let loaded = load(&self.core.store)?;
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
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

#[cfg(test)]
mod tests {
    use ftz_core::{Reason, envelope::PayloadType};
    use ftz_policy::{
        Agreement,
        examples::{agreement_doc, certification_rule},
    };

    use crate::testkit::Kit;

    fn agreement(kit: &Kit, from: &str, to: &str, version: u64, signers: &[&str]) -> Agreement {
        let mut doc = agreement_doc("a-1", from, to, certification_rule(&["AEO_ADVANCED"]), kit.now());
        doc.version = version;
        Agreement::parse(kit.signed(PayloadType::RECOGNITION_AGREEMENT, &doc, signers)).unwrap()
    }

    #[tokio::test]
    async fn an_agreement_needs_both_authorities_this_zone_and_a_newer_version() {
        let kit = Kit::new().await;
        // One authority is not enough; nothing is stored.
        let e = kit.agreements.install(agreement(&kit, "hainan", "shanghai", 1, &["hainan"])).await.err().unwrap();
        assert_eq!(e.reason, Reason::AgreementUnderSigned);
        assert!(kit.core.store.agreements().unwrap().is_empty());
        // Between two other zones: not this node's business.
        let other = agreement(&kit, "hainan", "guangdong", 1, &["hainan", "guangdong"]);
        assert_eq!(kit.agreements.install(other).await.err().unwrap().reason, Reason::AgreementNotForThisZone);

        let v2 = agreement(&kit, "hainan", "shanghai", 2, &["hainan", "shanghai"]);
        let (_, already) = kit.agreements.install(v2.clone()).await.unwrap();
        assert!(!already);
        assert!(kit.agreements.install(v2).await.unwrap().1);
        let v1 = agreement(&kit, "hainan", "shanghai", 1, &["hainan", "shanghai"]);
        assert_eq!(kit.agreements.install(v1).await.err().unwrap().reason, Reason::AgreementOlderVersion);
        assert_eq!(kit.agreements.all().len(), 1);
        assert_eq!(kit.core.store.agreements().unwrap().len(), 1);
        // The install is in the audit log.
        assert_eq!(kit.log.durable_size(), 1);
    }
}
