//! Starting and stopping a node: build it (`node`), bind, serve, shut down gracefully.
//!
//! Connections are accepted here, not by tonic: each TLS handshake runs in its own task under a
//! deadline, the number of open connections is capped, and only finished handshakes reach the
//! gRPC server. A slow or hostile client can hold one connection slot for at most the
//! handshake deadline.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use ftz_core::{Clock, SystemClock};
use ftz_proto::{
    admin_server::AdminServer, audit_server::AuditServer, issuer_server::IssuerServer, peer_server::PeerServer,
    verify_server::VerifyServer,
};
use ftz_store::{Store, StoreError};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Server, server::Connected};

use crate::{
    auth::{AuthLayer, Authenticator},
    config::{Limits, NodeConfig},
    conn::{ConnFlags, ConnInfo, Pending},
    node::{self, Node, StartError},
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
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), listener: None }
    }
}

/// A node that is serving.
pub struct RunningNode {
    node: Arc<Node>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl RunningNode {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

/// Loads keys, certificate, store and registry, checks they fit together, binds and serves.
pub async fn start(config: &NodeConfig, opts: NodeOptions) -> Result<RunningNode, StartError> {
    ftz_client::tls::install_crypto_provider();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let parts = node::load(config, opts.clock, shutdown_rx.clone())?;

    let listener = match opts.listener {
        Some(l) => l,
        None => std::net::TcpListener::bind(&config.listen)
            .map_err(|source| StartError::Bind { addr: config.listen.clone(), source })?,
    };
    let bind_err = |source| StartError::Bind { addr: config.listen.clone(), source };
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let listener = TcpListener::from_std(listener).map_err(bind_err)?;
    let server_tls = tls::server_config(parts.tls_chain.clone(), parts.tls_key.clone_key())?;

    let node = Arc::new(parts.assemble(config, local_addr).await?);
    let incoming =
        accept_connections(listener, TlsAcceptor::from(Arc::new(server_tls)), &config.limits, shutdown_rx.clone());
    let router = build_router(node.clone()).await?;
    let mut stop = shutdown_rx;
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { stopped(&mut stop).await })
            .await
            .map_err(|e| e.to_string())
    });
    let core = &node.core;
    tracing::info!(
        zone = %core.zone,
        addr = %local_addr,
        registry_version = core.registry().version(),
        node_key = %core.node_key.key_id(),
        "node serving"
    );
    Ok(RunningNode { node, local_addr, shutdown, task })
}

async fn build_router(
    node: Arc<Node>,
) -> Result<
    tonic::transport::server::Router<tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>>,
    StartError,
> {
    let limits = node.core.limits.clone();
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

    let auth =
        Arc::new(Authenticator::new(node.core.clone(), node.log.clone(), node.outbox.clone(), node.users.clone()));
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
        .max_connection_age(Duration::from_millis(limits.max_connection_age_ms.max(1_000)))
        .max_connection_age_grace(Duration::from_millis(limits.request_timeout_ms))
        .layer(AuthLayer::new(auth))
        .add_service(limited!(PeerServer, PeerService::new(node.clone())))
        .add_service(limited!(AdminServer, AdminService::new(node.clone())))
        .add_service(limited!(IssuerServer, IssuerService::new(node.clone())))
        .add_service(limited!(VerifyServer, VerifyService::new(node.clone())))
        .add_service(limited!(AuditServer, AuditService::new(node)))
        .add_service(health_service)
        .add_service(reflection))
}

/// A finished TLS connection, holding its slot of the connection limit until it closes. Until
/// it has made an authenticated call it is in the unauthenticated pool (`conn`): closed when
/// displaced from it or when its deadline for a first call passes.
struct Conn {
    tls: TlsStream<TcpStream>,
    _slot: OwnedSemaphorePermit,
    flags: Arc<ConnFlags>,
    first_call_by: Pin<Box<tokio::time::Sleep>>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo { tls: self.tls.connect_info(), flags: self.flags.clone() }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.flags.is_closing() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "displaced before a first call")));
        }
        if !self.flags.is_authenticated() && self.first_call_by.as_mut().poll(cx).is_ready() {
            self.flags.close();
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no authenticated call in time")));
        }
        self.flags.wake_on_close(cx.waker());
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.flags.close();
        self.flags.release();
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
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<Result<Conn, io::Error>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let pending = Pending::new(
        limits.max_unauthenticated_connections,
        limits.max_unauthenticated_per_source,
        limits.max_connections_per_caller,
    );
    let handshake_deadline = Duration::from_millis(limits.handshake_timeout_ms);
    let first_call = Duration::from_millis(limits.first_call_timeout_ms);
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
            let flags = pending.admit(remote.ip());
            let first_call_by = Box::pin(tokio::time::sleep(first_call));
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(handshake_deadline, acceptor.accept(tcp));
                tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(Conn { tls, _slot: slot, flags, first_call_by })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    },
                    () = flags.closed() => tracing::debug!(%remote, "displaced during its handshake"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
