//! Starting and stopping a node: build it (`node`), bind, serve, shut down gracefully.
//!
//! Connections are accepted by `listen`, not by tonic. The gRPC listener and the HTTPS one (the
//! JSON API's `gateway`) serve the same stack: authentication in front of every service.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ftz_core::{Clock, SystemClock};
use ftz_proto::{
    admin_server::AdminServer, audit_server::AuditServer, issuer_server::IssuerServer, peer_server::PeerServer,
    verify_server::VerifyServer,
};
use ftz_store::{Store, StoreError};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tonic::transport::Server;

use crate::{
    auth::{AuthLayer, Authenticator},
    config::{Limits, NodeConfig},
    gateway,
    listen::{accept_connections, stopped},
    metrics::Metrics,
    node::{self, Node, StartError},
    ops::Ops,
    services::{
        admin::AdminService, audit::AuditService, issuer::IssuerService, peer::PeerService, verify::VerifyService,
    },
    tls,
};

/// How a node is started beyond its config: the clock (tests move it by hand) and optionally
/// an already bound listener (tests and the demo bind port 0 first, then write the registry).
pub struct NodeOptions {
    pub clock: Arc<dyn Clock>,
    pub listener: Option<std::net::TcpListener>,
    /// The HTTPS listener, already bound (else `[http] listen`, if set, is bound).
    pub http_listener: Option<std::net::TcpListener>,
    /// The ops listener (metrics, health), already bound (else `[ops] listen`, if set).
    pub ops_listener: Option<std::net::TcpListener>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), listener: None, http_listener: None, ops_listener: None }
    }
}

/// A node that is serving.
pub struct RunningNode {
    node: Arc<Node>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    ops_addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl RunningNode {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The HTTPS listener's address, if the node has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The ops listener's address (metrics, health), if the node has one.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// Reports not ready from now on (`/readyz` answers 503), still serving every call: the
    /// first step of a graceful stop, so that a load balancer sends new calls elsewhere.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The node's zone.
    pub fn zone(&self) -> &ftz_core::ZoneId {
        &self.node.core.zone
    }

    /// The node's store, for tools and tests that inspect what it holds.
    pub fn store(&self) -> &Store {
        &self.node.core.store
    }

    /// Deletes what is past its retention now (the node also does so on a timer); returns how
    /// many items.
    pub async fn run_retention(&self) -> usize {
        crate::retention::run_once(&self.node.core, &self.node.log).await
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
        self.node.core.tasks.join(Duration::from_secs(10)).await;
        self.node.log.close().await;
        let store = self.node.core.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .unwrap_or_else(|e| Err(StoreError::Corrupt { what: "flush", detail: e.to_string() }))
    }
}

/// Binds `addr`, or takes the listener given (already bound), as a non-blocking tokio listener.
fn bind(given: Option<std::net::TcpListener>, addr: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind { addr: addr.to_string(), source };
    let listener = match given {
        Some(l) => l,
        None => std::net::TcpListener::bind(addr).map_err(bind_err)?,
    };
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((TcpListener::from_std(listener).map_err(bind_err)?, local))
}

/// Loads keys, certificate, store and registry, checks they fit together, binds and serves.
pub async fn start(config: &NodeConfig, opts: NodeOptions) -> Result<RunningNode, StartError> {
    ftz_client::tls::install_crypto_provider();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let ops = match (&config.ops.listen, opts.ops_listener) {
        (_, Some(l)) => Some(bind(Some(l), "the given ops listener")?),
        (Some(addr), None) => Some(bind(None, addr)?),
        (None, None) => None,
    };
    // Counted only where someone can read it.
    let metrics = Arc::new(if ops.is_some() { Metrics::on() } else { Metrics::off() });
    let parts = node::load(config, opts.clock, shutdown_rx.clone(), metrics)?;
    let tls_not_after_ms = parts.tls_chain.first().and_then(|c| ftz_pki::not_after_ms(c).ok());

    let (listener, local_addr) = bind(opts.listener, &config.listen)?;
    let http = match (&config.http.listen, opts.http_listener) {
        (_, Some(l)) => Some(bind(Some(l), "the given HTTPS listener")?),
        (Some(addr), None) => Some(bind(None, addr)?),
        (None, None) => None,
    };
    let server_tls = tls::server_config(parts.tls_chain.clone(), parts.tls_key.clone_key())?;
    let http_tls = tls::http_server_config(parts.tls_chain.clone(), parts.tls_key.clone_key())?;

    let node = Arc::new(parts.assemble(config, local_addr).await?);
    let incoming =
        accept_connections(listener, TlsAcceptor::from(Arc::new(server_tls)), &config.limits, shutdown_rx.clone());
    let (routes, auth) = build_routes(node.clone()).await?;
    let grpc = grpc_server(&node.core.limits, auth.clone()).add_routes(routes.clone());
    let mut stop = shutdown_rx.clone();
    let task = tokio::spawn(async move {
        grpc.serve_with_incoming_shutdown(incoming, async move { stopped(&mut stop).await })
            .await
            .map_err(|e| e.to_string())
    });
    let http_addr = http.map(|(listener, addr)| {
        let stack = tower::util::BoxCloneSyncService::new(tower::Layer::layer(&auth, routes));
        let incoming =
            accept_connections(listener, TlsAcceptor::from(Arc::new(http_tls)), &config.limits, shutdown_rx.clone());
        gateway::serve(incoming, stack, node.core.zone.to_string(), node.core.limits.clone(), shutdown_rx.clone());
        addr
    });
    let draining = Arc::new(AtomicBool::new(false));
    let ops_addr = ops.map(|(listener, addr)| {
        let o = Ops::new(node.clone(), tls_not_after_ms, draining.clone(), config.ops.max_checkpoint_delay_ms);
        crate::ops::serve(listener, o, shutdown_rx.clone());
        addr
    });
    let core = &node.core;
    tracing::info!(
        zone = %core.zone,
        addr = %local_addr,
        http = ?http_addr,
        ops = ?ops_addr,
        registry_version = core.registry().version(),
        node_key = %core.node_key.key_id(),
        "node serving"
    );
    Ok(RunningNode { node, local_addr, http_addr, ops_addr, draining, shutdown, task })
}

/// The gRPC server's settings, with authentication in front of everything.
fn grpc_server(
    limits: &Limits,
    auth: AuthLayer,
) -> Server<tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>> {
    Server::builder()
        .timeout(Duration::from_millis(limits.request_timeout_ms))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_concurrent_streams as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_connection_age(Duration::from_millis(limits.max_connection_age_ms.max(1_000)))
        .max_connection_age_grace(Duration::from_millis(limits.request_timeout_ms))
        .layer(auth)
}

/// Every service the node serves, and the authentication layer to put in front of them: the
/// gRPC listener and the JSON API's gateway serve the same stack.
async fn build_routes(node: Arc<Node>) -> Result<(tonic::service::Routes, AuthLayer), StartError> {
    let limits = node.core.limits.clone();
    let max = limits.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PeerServer<PeerService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_serving::<IssuerServer<IssuerService>>().await;
    health.set_serving::<VerifyServer<VerifyService>>().await;
    health.set_serving::<AuditServer<AuditService>>().await;
    // Reflection in both versions clients speak: v1, and v1alpha (Python grpcio's reflection
    // client and older grpcurl know only that one).
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ftz_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1().map_err(|e| StartError::Server(e.to_string()))?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().map_err(|e| StartError::Server(e.to_string()))?;

    let auth =
        Arc::new(Authenticator::new(node.core.clone(), node.log.clone(), node.outbox.clone(), node.users.clone()));
    macro_rules! limited {
        ($server:ident, $svc:expr) => {
            $server::new($svc).max_decoding_message_size(max).max_encoding_message_size(max)
        };
    }
    let routes = tonic::service::Routes::new(limited!(PeerServer, PeerService::new(node.clone())))
        .add_service(limited!(AdminServer, AdminService::new(node.clone())))
        .add_service(limited!(IssuerServer, IssuerService::new(node.clone())))
        .add_service(limited!(VerifyServer, VerifyService::new(node.clone())))
        .add_service(limited!(AuditServer, AuditService::new(node)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .clone();
    Ok((routes, AuthLayer::new(auth)))
}
