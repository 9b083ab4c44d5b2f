//! The composition root: reads what a node is made of (config, keys, certificate, store,
//! registry, installed documents), checks it fits together, and builds each capability with
//! exactly the handles it needs. [`Node`] holds them all; only this module, the RPC layer
//! (`services`) and the server see it whole.

use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use ftz_core::{
    Clock, Identity, Registry, UnixMillis, ZoneId,
    registry::{InstallContext, InstallDecision, check_install},
};
use ftz_pki::files::{self, FileError};
use ftz_store::{Store, StoreError, StoreOptions, StoredRegistry};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::{
    agreements::{self, Agreements},
    audit::{AuditLog, checkpoints, events},
    config::NodeConfig,
    core::Core,
    federation::{Federation, check_fits_node},
    industry::Industry,
    issuing::{Issuer, NoticeCourier},
    outbox::{Courier, Kind, Outbox},
    peers::PeerClients,
    ping::Pings,
    policies::{self, Policies, RevocationCourier},
    provider::Provider,
    recognition::Verifier,
    retention,
    tasks::Tasks,
    transfer::{self, DeliveryCourier, ReceiptCourier, Transfers},
    users::{self, UserRevocations},
    witness::Witness,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: io::Error },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("registry: {0}")]
    Registry(String),
    #[error("node certificate: {0}")]
    Certificate(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot start the gRPC server: {0}")]
    Server(String),
    #[error(transparent)]
    Agreements(#[from] crate::agreements::LoadError),
    #[error(transparent)]
    Policies(#[from] crate::policies::LoadError),
    #[error(transparent)]
    Users(#[from] crate::users::LoadError),
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::checkpoints::HistoryError),
}

/// Every capability of a running node.
pub(crate) struct Node {
    pub core: Arc<Core>,
    pub log: AuditLog,
    /// Pings of other zones' nodes (over the peer clients) and what the last ones found.
    pub pings: Pings,
    pub outbox: Arc<Outbox>,
    pub witness: Arc<Witness>,
    pub agreements: Arc<Agreements>,
    pub policies: Arc<Policies>,
    pub users: Arc<UserRevocations>,
    pub federation: Arc<Federation>,
    pub issuer: Issuer,
    pub provider: Provider,
    pub verifier: Verifier,
    pub industry: Industry,
    pub listen_addr: SocketAddr,
    pub started_at_ms: UnixMillis,
}

/// What a node is made of, read and checked, before anything runs.
pub(crate) struct Parts {
    pub tls_chain: Vec<CertificateDer<'static>>,
    pub tls_key: PrivateKeyDer<'static>,
    core: Arc<Core>,
    issuing_key: Option<ftz_core::SigningKey>,
    agreements: Vec<ftz_policy::Agreement>,
    policies: ftz_policy::exchange::PolicySet,
    pseudonym_secret: [u8; 32],
    withdrawn: Option<ftz_proto::Envelope>,
    log: AuditLog,
}

/// The outbox's courier for each kind of message, from the module that owns the message.
pub(crate) fn couriers(core: &Arc<Core>, log: &AuditLog, peers: &Arc<PeerClients>) -> Vec<(Kind, Arc<dyn Courier>)> {
    vec![
        (Kind::Receipt, Arc::new(ReceiptCourier { core: core.clone(), log: log.clone(), peers: peers.clone() })),
        (Kind::Delivery, Arc::new(DeliveryCourier { core: core.clone(), log: log.clone(), peers: peers.clone() })),
        (Kind::RevocationNotice, Arc::new(NoticeCourier(peers.clone()))),
        (Kind::PolicyRevocation, Arc::new(RevocationCourier(peers.clone()))),
    ]
}

/// Loads keys, certificate, store, registry and installed documents, and checks they fit
/// together. Background work is started by [`Parts::assemble`].
pub(crate) fn load(
    config: &NodeConfig,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Parts, StartError> {
    config.validate()?;
    let zone = config.zone()?;
    let now = clock.now_ms();

    let tls_chain = files::read_cert_chain(&config.tls.cert)?;
    let tls_key = files::read_tls_key(&config.tls.key)?;
    let node_key = files::read_signing_key(&config.keys.node_signing_key)?;
    let issuing_key = config.keys.issuing_key.as_deref().map(files::read_signing_key).transpose()?;
    let store = open_store(config)?;
    let held = held_registry(&store)?;
    let (registry, install) = choose_registry(config, held.as_ref(), &zone, &node_key, &tls_chain, now)?;
    if let Some(stored) = install {
        store.install_registry(&stored, registry.digest(), held.as_ref().map(Registry::version))?;
        tracing::info!(version = registry.version(), "registry installed from the configured file");
    }
    if let Some(warning) = anchor_mismatch(config, &registry, &zone)? {
        tracing::warn!("{warning}");
    }
    let agreements = agreements::load(&store)?;
    let policies = policies::load(&store, &zone)?;
    let withdrawn = users::load(&store)?;
    let pseudonym_secret = store.pseudonym_secret(|| {
        let mut b = [0u8; 32];
        // A failing OS RNG leaves zeros, which the check below refuses.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        b
    })?;
    if pseudonym_secret == [0u8; 32] {
        return Err(StartError::Server("the system random number generator failed".into()));
    }
    checkpoints::check_signed_history(&store, &zone, &node_key, &registry)?;
    transfer::drop_orphan_receipts(&store)?;
    let log = AuditLog::start(store.clone())?;
    if let Some(k) = &issuing_key {
        let listed = registry
            .zone(&zone)
            .is_some_and(|z| z.key_valid_at(ftz_proto::KeyPurpose::Issuing, &k.key_id(), now).is_some());
        if !listed {
            tracing::warn!(key = %k.key_id(), "the issuing key is not a valid issuing key of this zone in the registry: issuing is refused until it is");
        }
    }
    let mut limits = config.limits.clone();
    limits.replicas = match config.store.engine {
        crate::config::StoreEngine::Postgres => config.store.replicas.max(1),
        crate::config::StoreEngine::Sled => 1,
    };
    let core = Core::new(zone, clock, store, node_key, limits, registry, Tasks::new(shutdown));
    let core = Arc::new(core.with_metrics(metrics));
    Ok(Parts { tls_chain, tls_key, core, issuing_key, agreements, policies, pseudonym_secret, withdrawn, log })
}

/// `ftz-node --check`: reads and checks what [`load`] would, and changes nothing: no data
/// directory or store is created, no registry installed, nothing bound beyond a moment. An
/// existing store is copied to a temporary directory and the copy opened (sled writes when it
/// opens a store), to check its format, the registry it holds and that its log reproduces its
/// latest checkpoint. Returns what it found.
pub(crate) fn check(config: &NodeConfig, now: UnixMillis) -> Result<Vec<String>, StartError> {
    config.validate()?;
    let zone = config.zone()?;
    let mut found = Vec::new();
    let tls_chain = files::read_cert_chain(&config.tls.cert)?;
    let tls_key = files::read_tls_key(&config.tls.key)?;
    crate::tls::server_config(tls_chain.clone(), tls_key)?;
    let node_key = files::read_signing_key(&config.keys.node_signing_key)?;
    if let Some(path) = &config.keys.issuing_key {
        files::read_signing_key(path)?;
    }
    let dir = &config.data_dir;
    // A running node holds its store: the checks that need the store wait for it to stop, and
    // its listen addresses are taken by it. What a restart would load (configuration, keys,
    // certificates, the registry file) is still checked: rotate files, check, then restart.
    let in_use = store_in_use(dir);
    // sled writes when it opens a store (it recovers and snapshots): a copy is opened instead.
    let copy = tempfile::Builder::new()
        .prefix("ftz-node-check-")
        .tempdir()
        .map_err(|source| StartError::DataDir { path: std::env::temp_dir().display().to_string(), source })?;
    let store = if config.store.engine == crate::config::StoreEngine::Postgres {
        let mut options = config.store.postgres()?;
        options.create = false;
        let url = crate::config::redact_url(&options.url);
        match Store::open_postgres(options) {
            Ok(store) => {
                found.push(format!("PostgreSQL store at {url} opens (format {})", ftz_store::FORMAT_VERSION));
                Some(store)
            }
            Err(ftz_store::StoreError::Absent) => {
                found.push(format!("no store at {url} yet: the node creates it at its first start"));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else if in_use {
        found.push(format!(
            "store at {} is in use by a running node: its format, registry and log are checked with the node stopped",
            dir.display()
        ));
        None
    } else if dir.join("db").exists() || dir.join("conf").exists() {
        let bytes = copy_dir(dir, copy.path()).map_err(|source| StartError::DataDir {
            path: format!("{} (copying it to check it)", dir.display()),
            source,
        })?;
        let store = Store::open(copy.path(), StoreOptions { cache_capacity_bytes: 8 * 1024 * 1024 })?;
        found.push(format!(
            "store at {} opens (format {}; a copy of {} MB was checked)",
            dir.display(),
            ftz_store::FORMAT_VERSION,
            bytes.div_ceil(1024 * 1024)
        ));
        Some(store)
    } else {
        found.push(format!("no store at {} yet: the node creates it at its first start", dir.display()));
        None
    };
    let held = store.as_ref().map(held_registry).transpose()?.flatten();
    let (registry, install) = choose_registry(config, held.as_ref(), &zone, &node_key, &tls_chain, now)?;
    found.push(match install {
        Some(_) if in_use => format!(
            "registry v{} from {} checked (the store's, maybe newer, is checked with the node stopped)",
            registry.version(),
            config.registry.file.as_deref().unwrap_or(Path::new("?")).display()
        ),
        Some(_) => format!(
            "registry v{} from {} would be installed",
            registry.version(),
            config.registry.file.as_deref().unwrap_or(Path::new("?")).display()
        ),
        None => format!("registry v{} in force", registry.version()),
    });
    if let Some(problem) = anchor_mismatch(config, &registry, &zone)? {
        return Err(StartError::Registry(problem));
    }
    if let Some(store) = &store {
        agreements::load(store)?;
        policies::load(store, &zone)?;
        users::load(store)?;
        checkpoints::check_signed_history(store, &zone, &node_key, &registry)?;
        found.push(format!("audit log of {} entries reproduces its latest checkpoint", store.audit_size()?));
    }
    for (what, addr) in [
        ("listen", Some(&config.listen)),
        ("http.listen", config.http.listen.as_ref()),
        ("ops.listen", config.ops.listen.as_ref()),
    ] {
        if let Some(addr) = addr {
            match std::net::TcpListener::bind(addr.as_str()) {
                Ok(_) => {}
                Err(e) if in_use && e.kind() == io::ErrorKind::AddrInUse => {
                    found.push(format!("{addr} ({what}) is in use: by the running node, if it listens there"));
                }
                Err(source) => return Err(StartError::Bind { addr: format!("{addr} ({what})"), source }),
            }
        }
    }
    Ok(found)
}

/// Opens the configured store: sled in the data directory (created, private), or the
/// PostgreSQL database (its schema created or checked).
pub fn open_store(config: &NodeConfig) -> Result<Store, StartError> {
    match config.store.engine {
        crate::config::StoreEngine::Sled => {
            create_private_dir(&config.data_dir)?;
            Ok(Store::open(
                &config.data_dir,
                StoreOptions { cache_capacity_bytes: config.store.cache_capacity_mb * 1024 * 1024 },
            )?)
        }
        crate::config::StoreEngine::Postgres => Ok(Store::open_postgres(config.store.postgres()?)?),
    }
}

/// Whether a running node holds the store in `dir` (sled's lock on its `db` file).
fn store_in_use(dir: &Path) -> bool {
    std::fs::File::open(dir.join("db"))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Copies the files under `from` into `to`; returns the bytes copied.
fn copy_dir(from: &Path, to: &Path) -> io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            bytes += copy_dir(&entry.path(), &target)?;
        } else {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(bytes)
}

impl Parts {
    /// Builds every capability, runs what is due at start (retention), and starts the
    /// background work: retention, checkpoints and their witnessing, the sweeper, the outbox.
    pub(crate) async fn assemble(self, config: &NodeConfig, listen_addr: SocketAddr) -> Result<Node, StartError> {
        let Parts { tls_chain, tls_key, core, issuing_key, agreements, policies, pseudonym_secret, withdrawn, log } =
            self;
        let users = Arc::new(UserRevocations::new(core.clone(), log.clone(), withdrawn)?);
        let peers = Arc::new(PeerClients::new(core.clone(), tls_chain.clone(), tls_key));
        let couriers = couriers(&core, &log, &peers);
        let outbox = Arc::new(Outbox::new(core.clone(), log.clone(), couriers, core.limits.outbox_per_destination));
        let policies = Arc::new(Policies::new(core.clone(), log.clone(), outbox.clone(), policies));
        let agreements = Arc::new(Agreements::new(core.clone(), log.clone(), agreements));
        let transfers = Arc::new(Transfers::new(
            core.clone(),
            log.clone(),
            outbox.clone(),
            policies.clone(),
            peers.clone(),
            config.audit.ack_timeout_ms,
        ));
        let witness = Arc::new(Witness::new(core.clone(), log.clone(), peers.clone()));
        let node = Node {
            federation: Arc::new(Federation::new(core.clone(), log.clone(), tls_chain)),
            issuer: Issuer::new(core.clone(), issuing_key, transfers.clone(), outbox.clone()),
            provider: Provider::new(core.clone(), transfers.clone(), config.recognition.clone()),
            verifier: Verifier::new(core.clone(), agreements.clone(), transfers.clone(), config.recognition.clone()),
            industry: Industry::new(core.clone(), transfers, pseudonym_secret),
            pings: Pings::new(core.clone(), peers.clone()),
            started_at_ms: core.now_ms(),
            core,
            log,
            outbox,
            witness,
            agreements,
            policies,
            users,
            listen_addr,
        };
        // Data past its retention goes before anything is served, then on a timer.
        let deleted = retention::run_once(&node.core, &node.log).await;
        if deleted > 0 {
            tracing::info!(deleted, "retention: deleted data that came due while the node was down");
        }
        retention::spawn(node.core.clone(), node.log.clone());
        events::log_node_key(&node.core, &node.log).await;
        let signed = checkpoints::spawn_signer(
            node.core.clone(),
            node.log.clone(),
            Duration::from_millis(config.audit.checkpoint_interval_ms),
        );
        node.witness.spawn_cosigner(signed);
        // A store restored from a backup: its log stays shut until its witnesses confirm it.
        crate::restored::spawn(node.core.clone(), node.log.clone(), peers.clone());
        transfer::spawn_unacknowledged_sweeper(node.core.clone(), node.log.clone());
        node.outbox.spawn_retries();
        if node.core.store.is_shared() {
            let reloads = crate::replicas::Reloads {
                federation: node.federation.clone(),
                agreements: node.agreements.clone(),
                policies: node.policies.clone(),
                users: node.users.clone(),
            };
            crate::replicas::spawn(node.core.clone(), node.log.clone(), reloads);
        }
        Ok(node)
    }
}

fn create_private_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir { path: path.display().to_string(), source };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// The registry the store holds, if any.
fn held_registry(store: &Store) -> Result<Option<Registry>, StartError> {
    store
        .current_registry()?
        .map(|s| Registry::from_bytes(&s.envelope))
        .transpose()
        .map_err(|e| StartError::Registry(format!("the stored registry is unreadable: {e}")))
}

/// A configured trust anchor that is not an authority key of this zone in the registry in
/// force: harmless once a registry is installed (the anchor only admits the first one), but a
/// sign of a config that was not meant for this node's store.
fn anchor_mismatch(config: &NodeConfig, registry: &Registry, zone: &ZoneId) -> Result<Option<String>, StartError> {
    let Some(anchor) = config.trust_anchor()? else { return Ok(None) };
    let listed = registry
        .zone(zone)
        .is_some_and(|z| z.keys.iter().any(|k| k.purpose == ftz_proto::KeyPurpose::Authority && k.id == anchor));
    Ok((!listed).then(|| {
        format!(
            "registry.trust_anchor {anchor} is not an authority key of zone {zone} in registry v{} in force: correct it (ftzctl keys show --zone {zone}) or remove it (it only admits the first registry)",
            registry.version()
        )
    }))
}

/// The registry to start with, and what to install first: the stored one, or the configured
/// file when it is newer (checked by the same rules as `Admin.InstallRegistry`, the first one
/// against the trust anchor). Writes nothing.
fn choose_registry(
    config: &NodeConfig,
    held: Option<&Registry>,
    zone: &ZoneId,
    node_key: &ftz_core::SigningKey,
    tls_chain: &[rustls::pki_types::CertificateDer<'static>],
    now: ftz_core::UnixMillis,
) -> Result<(Registry, Option<StoredRegistry>), StartError> {
    let named = ftz_pki::identity_of(&tls_chain[0])
        .map_err(|e| StartError::Certificate(format!("{}: {e}", config.tls.cert.display())))?;
    let held = held.cloned();
    let mut install = None;
    let file = match &config.registry.file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| FileError::Io { path: path.clone(), source })?;
            let r =
                Registry::from_bytes(&bytes).map_err(|e| StartError::Registry(format!("{}: {e}", path.display())))?;
            Some((path.clone(), r))
        }
        None => None,
    };

    let registry = match (held, file) {
        (None, None) => {
            return Err(StartError::Registry(
                "no registry is installed and none is configured: set registry.file (and registry.trust_anchor for the first install)".into(),
            ));
        }
        (Some(held), None) => held,
        (Some(held), Some((path, file))) if file.version() <= held.version() => {
            tracing::info!(
                stored = held.version(),
                file = %path.display(),
                file_version = file.version(),
                "keeping the stored registry: the configured file is not newer"
            );
            held
        }
        (held, Some((path, candidate))) => {
            if candidate.zone(zone).is_none() {
                return Err(unknown_zone(zone, &candidate));
            }
            check_node_identity(&named.identity, zone, &config.tls.cert)?;
            let ctx = InstallContext { current: held.as_ref(), own_zone: zone, anchor: config.trust_anchor()?, now };
            let counted = match check_install(&candidate, ctx) {
                Ok(InstallDecision::Install { counted }) => counted,
                Ok(InstallDecision::AlreadyInstalled) => Vec::new(),
                Err(e) => {
                    return Err(StartError::Registry(format!("{} refused: {}: {e}", path.display(), e.reason())));
                }
            };
            check_fits_node(&candidate, zone, &node_key.key_id(), tls_chain, now)
                .map_err(|e| StartError::Registry(format!("{} refused: {e}", path.display())))?;
            install = Some(StoredRegistry {
                version: candidate.version(),
                envelope: candidate.to_bytes(),
                installed_at_ms: now,
                counted_signers: counted.iter().map(|k| k.as_bytes().to_vec()).collect(),
            });
            candidate
        }
    };
    if registry.zone(zone).is_none() {
        return Err(unknown_zone(zone, &registry));
    }
    check_node_identity(&named.identity, zone, &config.tls.cert)?;
    check_fits_node(&registry, zone, &node_key.key_id(), tls_chain, now)
        .map_err(|e| StartError::Registry(e.to_string()))?;
    Ok((registry, install))
}

fn check_node_identity(named: &Identity, zone: &ZoneId, cert: &Path) -> Result<(), StartError> {
    if *named == Identity::node(zone.clone()) {
        return Ok(());
    }
    Err(StartError::Certificate(format!(
        "{} names {named}, but this node is configured as zone {zone} (expected ftz://{zone}/node)",
        cert.display()
    )))
}

fn unknown_zone(zone: &ZoneId, r: &Registry) -> StartError {
    let listed: Vec<String> = r.zones().map(|z| z.id.to_string()).collect();
    StartError::Registry(format!(
        "zone_id {zone} is not listed in registry v{} (it lists: {})",
        r.version(),
        listed.join(", ")
    ))
}
