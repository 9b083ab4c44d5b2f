//! Installing a federation registry on this node: the pure rules of `ftz_core::registry`, plus
//! what only the node can check (its own key and certificate), then a durable store write, then
//! the swap in memory. Used by `Admin.InstallRegistry` and at start-up.

use ftz_core::{
    Reason, Registry, UnixMillis,
    registry::{InstallContext, InstallDecision, check_install},
};
use ftz_proto::KeyPurpose;
use ftz_store::StoredRegistry;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::{
    audit::{AuditLog, events::log_config},
    core::Core,
    error::ApiError,
};

/// Installs registries: owns the lock that keeps two installs from interleaving, and the node's
/// certificate chain that every new registry must still vouch for.
pub(crate) struct Federation {
    core: Arc<Core>,
    log: AuditLog,
    tls_chain: Vec<CertificateDer<'static>>,
    /// Serialises installs (check, store, swap).
    lock: tokio::sync::Mutex<()>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallReport {
    pub installed_version: u64,
    pub previous_version: u64,
    pub already_installed: bool,
    pub counted_signers: Vec<String>,
}

/// Checks that `candidate` keeps this node working: it lists the node's signing key as a valid
/// node key of the node's zone, its CA for the zone issued the node's certificate, and every CA
/// in it is usable. A registry failing this would cut the node off from its own federation.
pub(crate) fn check_fits_node(
    candidate: &Registry,
    zone: &ftz_core::ZoneId,
    node_key: &ftz_core::KeyId,
    tls_chain: &[rustls::pki_types::CertificateDer<'_>],
    now: UnixMillis,
) -> Result<(), ApiError> {
    for z in candidate.zones() {
        ftz_pki::check_ca(&z.ca_cert_der).map_err(|e| {
            ApiError::new(Reason::RegistryMalformed, format!("registry: CA certificate of zone {}: {e}", z.id))
        })?;
    }
    let own = candidate.zone(zone).ok_or_else(|| {
        ApiError::new(
            Reason::RegistryOmitsOwnZone,
            format!("registry v{} does not list zone {zone}", candidate.version()),
        )
    })?;
    if own.key_valid_at(KeyPurpose::Node, node_key, now).is_none() {
        return Err(ApiError::new(
            Reason::RegistryOmitsOwnZone,
            format!(
                "registry v{} does not list this node's signing key {node_key} as a valid node key of {zone}",
                candidate.version()
            ),
        ));
    }
    ftz_pki::verify_chain(tls_chain, &own.ca_cert_der, ftz_pki::CertUsage::Server, now).map_err(|e| {
        ApiError::new(
            Reason::RegistryOmitsOwnZone,
            format!(
                "registry v{}: the CA it lists for {zone} did not issue this node's certificate: {e}",
                candidate.version()
            ),
        )
    })?;
    Ok(())
}

impl Federation {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, tls_chain: Vec<CertificateDer<'static>>) -> Self {
        Self { core, log, tls_chain, lock: tokio::sync::Mutex::new(()) }
    }

    /// Takes the registry the store holds if it is newer than the one in force (another
    /// replica of this node installed it, by the same rules). Returns its version if taken.
    pub(crate) async fn reload(&self) -> Result<Option<u64>, ApiError> {
        let _guard = self.lock.lock().await;
        let Some(stored) = self.core.store.current_registry()? else { return Ok(None) };
        if stored.version <= self.core.registry().version() {
            return Ok(None);
        }
        let registry = Registry::from_bytes(&stored.envelope)
            .map_err(|e| ApiError::internal(format!("the stored registry is unreadable: {e}")))?;
        let version = registry.version();
        self.core.set_registry(registry);
        Ok(Some(version))
    }

    /// Installs `candidate` if the rules allow it. Acknowledges only after the store has flushed
    /// the new registry; the new registry is in force for every later call (peer channels follow it).
    pub(crate) async fn install(&self, candidate: Registry) -> Result<InstallReport, ApiError> {
        let state = &*self.core;
        let _guard = self.lock.lock().await;
        let current = state.registry();
        let now = state.now_ms();
        let ctx = InstallContext { current: Some(&current), own_zone: &state.zone, anchor: None, now };
        let counted = match check_install(&candidate, ctx)? {
            InstallDecision::AlreadyInstalled => {
                return Ok(InstallReport {
                    installed_version: current.version(),
                    previous_version: current.version(),
                    already_installed: true,
                    counted_signers: Vec::new(),
                });
            }
            InstallDecision::Install { counted } => counted,
        };
        check_fits_node(&candidate, &state.zone, &state.node_key.key_id(), &self.tls_chain, now)?;

        let stored = StoredRegistry {
            version: candidate.version(),
            envelope: candidate.to_bytes(),
            installed_at_ms: now,
            counted_signers: counted.iter().map(|k| k.as_bytes().to_vec()).collect(),
        };
        let digest = candidate.digest();
        state.store.write_durably(|s| s.install_registry(&stored, digest, Some(current.version()))).await?;

        let report = InstallReport {
            installed_version: candidate.version(),
            previous_version: current.version(),
            already_installed: false,
            counted_signers: counted.iter().map(ToString::to_string).collect(),
        };
        tracing::info!(
            version = candidate.version(),
            previous = current.version(),
            signers = ?report.counted_signers,
            "federation registry installed"
        );
        let (version, digest) = (candidate.version(), candidate.digest());
        state.set_registry(candidate);
        log_config(state, &self.log, "registry", state.registry().federation_id(), version, digest).await;
        Ok(report)
    }
}
