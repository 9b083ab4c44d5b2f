//! Accepting connections, for the gRPC listener and the HTTPS one alike: each TLS handshake
//! runs in its own task under a deadline, the number of open connections is capped, a
//! connection that has made no authenticated call yet sits in a small pool of its own
//! (`conn`), and only finished handshakes are handed on. A slow or hostile client can hold one
//! connection slot for at most the handshake deadline.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::{
    config::Limits,
    conn::{ConnFlags, ConnInfo, Pending},
};

/// A finished TLS connection, holding its slot of the connection limit until it closes. Until
/// it has made an authenticated call it is in the unauthenticated pool (`conn`): closed when
/// displaced from it or when its deadline for a first call passes.
pub(crate) struct Conn {
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
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub(crate) fn accept_connections(
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
