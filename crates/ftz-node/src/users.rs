//! The zone's list of withdrawn user certificates. A leaked certificate is withdrawn by the
//! zone's authority, which signs a new version of the list (every certificate still withdrawn,
//! by the SHA-256 of its DER); the admin installs it; from then on a call with it is refused
//! `CERTIFICATE_REVOKED`. A list rather than short-lived certificates renewed by the node: it
//! needs no online issuing CA in the node (the zone CA stays offline) and takes effect at once
//! on install, where short lifetimes would leave a leaked certificate usable until it expires.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use ftz_core::{
    Reason,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_proto::{Envelope, KeyPurpose, UserCertificateRevocations};
use ftz_store::{Store, StoreError};
use prost::Message;

use crate::{
    audit::{AuditLog, events::log_config},
    core::Core,
    error::ApiError,
};

const STORE_KEY: &str = "user_revocations";
/// Certificates on one list at most.
const MAX_LISTED: usize = 100_000;

#[derive(Debug, Default)]
struct Withdrawn {
    digests: HashSet<[u8; 32]>,
}

/// An installed list the node cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the installed list of withdrawn user certificates: {0}")]
    Unreadable(String),
}

pub(crate) struct UserRevocations {
    core: Arc<Core>,
    log: AuditLog,
    set: RwLock<Arc<Withdrawn>>,
    lock: tokio::sync::Mutex<()>,
}

fn parse(env: &Envelope) -> Result<(UserCertificateRevocations, HashSet<[u8; 32]>), ApiError> {
    let doc: UserCertificateRevocations = envelope::decode_payload(env, PayloadType::USER_CERTIFICATE_REVOCATIONS)?;
    if doc.certificate_digests.len() > MAX_LISTED {
        return Err(ApiError::invalid(format!("at most {MAX_LISTED} certificates on one list")));
    }
    let digests = doc
        .certificate_digests
        .iter()
        .map(|d| <[u8; 32]>::try_from(d.as_slice()))
        .collect::<Result<HashSet<_>, _>>()
        .map_err(|_| ApiError::invalid("every certificate digest is a SHA-256 (32 bytes)"))?;
    Ok((doc, digests))
}

/// The list as stored.
pub(crate) fn load(store: &Store) -> Result<Option<Envelope>, LoadError> {
    store
        .meta_value(STORE_KEY)?
        .map(|b| Envelope::decode(b.as_slice()).map_err(|e| LoadError::Unreadable(e.to_string())))
        .transpose()
}

impl UserRevocations {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, installed: Option<Envelope>) -> Result<Self, LoadError> {
        let withdrawn = match installed {
            Some(env) => {
                let (_, digests) = parse(&env).map_err(|e| LoadError::Unreadable(e.to_string()))?;
                Withdrawn { digests }
            }
            None => Withdrawn::default(),
        };
        Ok(Self { core, log, set: RwLock::new(Arc::new(withdrawn)), lock: tokio::sync::Mutex::new(()) })
    }

    /// Loads the installed list again (another replica of this node installed one).
    pub(crate) async fn reload(&self) -> Result<(), LoadError> {
        let _guard = self.lock.lock().await;
        let Some(env) = load(&self.core.store)? else { return Ok(()) };
        let (_, digests) = parse(&env).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Withdrawn { digests });
        Ok(())
    }

    /// Whether the certificate (its DER) was withdrawn by this zone's authority.
    pub(crate) fn is_withdrawn(&self, cert_der: &[u8]) -> bool {
        let set = self.set.read().unwrap_or_else(|e| e.into_inner()).clone();
        !set.digests.is_empty() && set.digests.contains(&sha256(cert_der))
    }

    /// Installs a newer list signed by this zone's authority; durable before it takes effect.
    /// Returns the version in force, whether it was installed already, and how many it lists.
    pub(crate) async fn install(&self, env: Envelope) -> Result<(u64, bool, usize), ApiError> {
        let core = &self.core;
        let (doc, digests) = parse(&env)?;
        if doc.zone_id != core.zone.as_str() {
            return Err(ApiError::new(
                Reason::ZoneMismatch,
                format!("the list is for zone {:?}; this node serves {}", doc.zone_id, core.zone),
            ));
        }
        let registry = core.registry();
        let now = core.now_ms();
        envelope::verify(&env, PayloadType::USER_CERTIFICATE_REVOCATIONS, |id| {
            registry.zone(&core.zone).and_then(|z| z.key_valid_at(KeyPurpose::Authority, id, now))
        })?;
        let _guard = self.lock.lock().await;
        // Decided against what the store holds (another replica of this node may have
        // installed a newer list), and written only over exactly that.
        let stored = core.store.meta_value(STORE_KEY)?;
        let installed = match &stored {
            Some(b) => {
                let env = Envelope::decode(b.as_slice()).map_err(|e| ApiError::internal(e.to_string()))?;
                parse(&env)?.0.version
            }
            None => 0,
        };
        if doc.version == installed {
            return Ok((installed, true, digests.len()));
        }
        if doc.version < installed {
            return Err(ApiError::new(
                Reason::PolicyOlderVersion,
                format!("version {} is older than the installed {installed}", doc.version),
            ));
        }
        let bytes = env.encode_to_vec();
        core.store.write_durably(|s| s.replace_meta_value(STORE_KEY, stored.as_deref(), &bytes)).await?;
        let n = digests.len();
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Withdrawn { digests });
        tracing::info!(version = doc.version, certificates = n, "withdrawn user certificates installed");
        log_config(core, &self.log, "user_revocations", core.zone.as_str(), doc.version, sha256(&env.payload)).await;
        Ok((doc.version, false, n))
    }
}
