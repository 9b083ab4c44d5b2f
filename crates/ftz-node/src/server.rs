//! Starting and stopping a node: load and check everything, bind, serve, shut down gracefully.
//!
//! Connections are accepted here, not by tonic: each TLS handshake runs in its own task under a
//! deadline, the number of open connections is capped, and only finished handshakes reach the
//! gRPC server. A slow or hostile client can hold one connection slot for at most the
//! handshake deadline.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use ftz_core::{
    Clock, Identity, Registry, SystemClock, ZoneId,
    registry::{InstallContext, InstallDecision, check_install},
};
use ftz_pki::files::{self, FileError};
use ftz_proto::{
    admin_server::AdminServer, audit_server::AuditServer, issuer_server::IssuerServer, peer_server::PeerServer,
    verify_server::VerifyServer,
};
use ftz_store::{Store, StoreError, StoreOptions, StoredRegistry};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{
    Server,
    server::{Connected, TcpConnectInfo, TlsConnectInfo},
};

use crate::{
    auth::{AuthLayer, Authenticator},
    config::NodeConfig,
    federation::check_fits_node,
    services::{
        admin::AdminService, audit::AuditService, issuer::IssuerService, peer::PeerService, verify::VerifyService,
    },
    state::{NodeParts, NodeState},
    tls,
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
    #[error("installed agreements: {0}")]
    Agreements(String),
    #[error("audit log: {0}")]
    Audit(String),
}

/// How a node is started beyond its config: the clock (tests move it by hand) and optionally
/// an already bound listener (tests and the demo bind port 0 first, then write the registry).
pub struct NodeOptions {
    pub clock: Arc<dyn Clock>,
    pub listener: Option<std::net::TcpListener>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), listener: None }
    }
}

/// A node that is serving.
pub struct RunningNode {
    state: Arc<NodeState>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl RunningNode {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    /// Stops accepting, lets in-flight calls finish, then flushes the store.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("server ended with an error: {e}"),
            Err(e) => tracing::error!("server task failed: {e}"),
        }
        // Background work ends on the signal; then the audit log finishes what is queued.
        self.state.join_tasks(Duration::from_secs(10)).await;
        self.state.audit.close().await;
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .unwrap_or_else(|e| Err(StoreError::Corrupt { what: "flush", detail: e.to_string() }))
    }
}

/// Loads keys, certificate, store and registry, checks they fit together, binds and serves.
pub async fn start(config: &NodeConfig, opts: NodeOptions) -> Result<RunningNode, StartError> {
    tls::install_crypto_provider();
    config.validate()?;
    let zone = config.zone()?;
    let clock = opts.clock;
    let now = clock.now_ms();

    let tls_chain = files::read_cert_chain(&config.tls.cert)?;
    let tls_key = files::read_tls_key(&config.tls.key)?;
    let node_key = files::read_signing_key(&config.keys.node_signing_key)?;
    let issuing_key = config.keys.issuing_key.as_deref().map(files::read_signing_key).transpose()?;
    create_private_dir(&config.data_dir)?;
    let store = Store::open(
        &config.data_dir,
        StoreOptions { cache_capacity_bytes: config.store.cache_capacity_mb * 1024 * 1024 },
    )?;
    let registry = load_registry(config, &store, &zone, &node_key, &tls_chain, now)?;
    let agreements = crate::agreements::load(&store)?;
    let policies = crate::policies::load(&store, &zone)?;
    let pseudonym_secret = store.pseudonym_secret(|| {
        let mut b = [0u8; 32];
        // A failing OS RNG leaves zeros, which the check below refuses.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        b
    })?;
    if pseudonym_secret == [0u8; 32] {
        return Err(StartError::Server("the system random number generator failed".into()));
    }
    crate::audit::check_signed_history(&store, &zone, &node_key, &registry).map_err(StartError::Audit)?;
    crate::audit::transfer::drop_orphan_receipts(&store)?;
    let audit = crate::audit::AuditLog::start(store.clone())?;
    if let Some(k) = &issuing_key {
        let listed = registry
            .zone(&zone)
            .is_some_and(|z| z.key_valid_at(ftz_proto::KeyPurpose::Issuing, &k.key_id(), now).is_some());
        if !listed {
            tracing::warn!(key = %k.key_id(), "the issuing key is not a valid issuing key of this zone in the registry: issuing is refused until it is");
        }
    }

    let listener = match opts.listener {
        Some(l) => l,
        None => std::net::TcpListener::bind(&config.listen)
            .map_err(|source| StartError::Bind { addr: config.listen.clone(), source })?,
    };
    let bind_err = |source| StartError::Bind { addr: config.listen.clone(), source };
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let listener = TcpListener::from_std(listener).map_err(bind_err)?;

    let server_tls = tls::server_config(tls_chain.clone(), tls_key.clone_key())?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(NodeState::new(NodeParts {
        zone,
        clock,
        store,
        node_key,
        issuing_key,
        limits: config.limits.clone(),
        recognition: config.recognition.clone(),
        agreements,
        policies,
        pseudonym_secret,
        audit,
        audit_config: config.audit.clone(),
        shutdown: shutdown_rx.clone(),
        listen_addr: local_addr,
        tls_chain,
        tls_key,
        registry,
    }));

    // Data past its retention goes before anything is served, then on a timer.
    let deleted = crate::retention::run_once(&state).await;
    if deleted > 0 {
        tracing::info!(deleted, "retention: deleted data that came due while the node was down");
    }
    crate::retention::spawn(state.clone());
    crate::audit::log_node_key(&state).await;
    crate::audit::spawn_checkpointer(state.clone());
    crate::audit::transfer::spawn_unacknowledged_sweeper(state.clone());
    crate::outbox::spawn(state.clone());
    let incoming = accept_connections(listener, TlsAcceptor::from(Arc::new(server_tls)), &state, shutdown_rx.clone());
    let router = build_router(state.clone()).await?;
    let mut stop = shutdown_rx;
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { stopped(&mut stop).await })
            .await
            .map_err(|e| e.to_string())
    });
    let reg = state.registry();
    tracing::info!(
        zone = %state.zone,
        addr = %local_addr,
        registry_version = reg.version(),
        node_key = %state.node_key.key_id(),
        "node serving"
    );
    Ok(RunningNode { state, local_addr, shutdown, task })
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

/// The registry to start with: the stored one, or the configured file when it is newer (then
/// installed by the same rules as `Admin.InstallRegistry`, the first one against the trust
/// anchor).
fn load_registry(
    config: &NodeConfig,
    store: &Store,
    zone: &ZoneId,
    node_key: &ftz_core::SigningKey,
    tls_chain: &[rustls::pki_types::CertificateDer<'static>],
    now: ftz_core::UnixMillis,
) -> Result<Registry, StartError> {
    let named = ftz_pki::identity_of(&tls_chain[0])
        .map_err(|e| StartError::Certificate(format!("{}: {e}", config.tls.cert.display())))?;
    let held = store
        .current_registry()?
        .map(|s| Registry::from_bytes(&s.envelope))
        .transpose()
        .map_err(|e| StartError::Registry(format!("the stored registry is unreadable: {e}")))?;
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
            let stored = StoredRegistry {
                version: candidate.version(),
                envelope: candidate.to_bytes(),
                installed_at_ms: now,
                counted_signers: counted.iter().map(|k| k.as_bytes().to_vec()).collect(),
            };
            store.install_registry(&stored, candidate.digest(), held.as_ref().map(Registry::version))?;
            tracing::info!(version = candidate.version(), file = %path.display(), "registry installed from file");
            candidate
        }
    };
    if registry.zone(zone).is_none() {
        return Err(unknown_zone(zone, &registry));
    }
    check_node_identity(&named.identity, zone, &config.tls.cert)?;
    check_fits_node(&registry, zone, &node_key.key_id(), tls_chain, now)
        .map_err(|e| StartError::Registry(e.to_string()))?;
    Ok(registry)
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

async fn build_router(
    state: Arc<NodeState>,
) -> Result<
    tonic::transport::server::Router<tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>>,
    StartError,
> {
    let limits = state.limits.clone();
    let max = limits.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PeerServer<PeerService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_serving::<IssuerServer<IssuerService>>().await;
    health.set_serving::<VerifyServer<VerifyService>>().await;
    health.set_serving::<AuditServer<AuditService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ftz_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Server(e.to_string()))?;

    let auth = Arc::new(Authenticator::new(state.clone()));
    macro_rules! limited {
        ($server:ident, $svc:expr) => {
            $server::new($svc).max_decoding_message_size(max).max_encoding_message_size(max)
        };
    }
    Ok(Server::builder()
        .timeout(Duration::from_millis(limits.request_timeout_ms))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_concurrent_streams as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(AuthLayer::new(auth))
        .add_service(limited!(PeerServer, PeerService::new(state.clone())))
        .add_service(limited!(AdminServer, AdminService::new(state.clone())))
        .add_service(limited!(IssuerServer, IssuerService::new(state.clone())))
        .add_service(limited!(VerifyServer, VerifyService::new(state.clone())))
        .add_service(limited!(AuditServer, AuditService::new(state)))
        .add_service(health_service)
        .add_service(reflection))
}

/// A finished TLS connection, holding its slot of the connection limit until it closes.
struct Conn {
    tls: TlsStream<TcpStream>,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tls.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// Resolves once shutdown is signalled (or the node is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn accept_connections(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: &NodeState,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<Result<Conn, io::Error>> {
    let limits = &state.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let handshake_deadline = Duration::from_millis(limits.handshake_timeout_ms);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "connection limit reached; closing new connection");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(Conn { tls, _slot: slot })).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
