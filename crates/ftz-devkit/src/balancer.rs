//! A TCP load balancer on 127.0.0.1 in front of a zone's replicas, as a deployment puts one on
//! the zone's registry endpoint: the other zones and the clients dial it, it hands each new
//! connection to the next replica (round-robin) that accepts a TCP connection, skipping dead
//! ones, and copies bytes both ways. TLS passes through untouched (the replicas share the
//! zone's certificate), so the balancer holds no key and sees no identity.
//!
//! It runs on a thread and runtime of its own, so that it keeps forwarding whatever the caller's
//! runtime is doing (a test that blocks a worker thread while a node process starts, say).
//! Connections are bounded: past `max_connections` open ones, new ones wait in the kernel's
//! backlog. [`Balancer::stop`] (or dropping it) closes the listener and every connection.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

/// How long a replica may take to accept a TCP connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Connections open at once, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Connections handed to each backend so far.
    forwarded: Vec<AtomicU64>,
    /// Connections closed at once because no backend accepted one.
    refused: AtomicU64,
    /// Connections open now.
    open: AtomicUsize,
}

impl Balancer {
    /// Starts forwarding the connections `listener` accepts to `backends`, at most
    /// `max_connections` at once.
    pub fn start(
        listener: std::net::TcpListener,
        backends: Vec<SocketAddr>,
        max_connections: usize,
    ) -> std::io::Result<Balancer> {
        if backends.is_empty() || max_connections == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a balancer needs backends and connections",
            ));
        }
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            forwarded: backends.iter().map(|_| AtomicU64::new(0)).collect(),
            backends,
            next: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        let thread = std::thread::Builder::new().name(format!("balancer {addr}")).spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, serving, max_connections, stopped).await,
                    Err(e) => tracing::warn!("balancer on {addr}: {e}"),
                }
            });
        })?;
        Ok(Balancer { addr, shared, stop, thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backends, in their round-robin order.
    pub fn backends(&self) -> &[SocketAddr] {
        &self.shared.backends
    }

    /// Connections handed to each backend so far (in the order of [`Balancer::backends`]).
    pub fn forwarded(&self) -> Vec<u64> {
        self.shared.forwarded.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Connections closed at once because no backend accepted a connection.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection, and waits until they are closed.
    pub fn stop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, max_connections: usize, mut stopped: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let inbound = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, say: not a reason to spin.
                    tracing::debug!("balancer: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let _permit = permit;
            let Some(mut outbound) = shared.connect().await else {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                return; // dropped: the client sees its connection closed
            };
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            shared.open.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

impl Shared {
    /// A connection to the next backend in turn that accepts one (a dead backend's turn goes to
    /// the one after it), or None when none does.
    async fn connect(&self) -> Option<TcpStream> {
        let n = self.backends.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (first + k) % n;
            if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.backends[i])).await {
                let _ = s.set_nodelay(true);
                self.forwarded[i].fetch_add(1, Ordering::Relaxed);
                return Some(s);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server that prefixes what it echoes with its name.
    async fn echo(name: u8) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).await.is_ok() {
                        if s.write_all(&[name, b[0]]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn ask(addr: SocketAddr) -> Option<u8> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"x").await.ok()?;
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.ok()?;
        (b[1] == b'x').then_some(b[0])
    }

    #[tokio::test]
    async fn round_robin_over_live_backends_skipping_dead_ones_until_stopped() {
        let (a, _ta) = echo(b'a').await;
        let (b, tb) = echo(b'b').await;
        let (c, _tc) = echo(b'c').await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut lb = Balancer::start(listener, vec![a, b, c], 8).unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(ask(lb.addr()).await.unwrap());
        }
        assert_eq!(got, b"abcabc");
        // b dies: its turns go to c, nothing is refused.
        tb.abort();
        let _ = tb.await;
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(ask(lb.addr()).await.unwrap());
        }
        assert!(!got.contains(&b'b') && got.contains(&b'a') && got.contains(&b'c'), "{got:?}");
        assert_eq!(lb.refused(), 0);
        assert_eq!(lb.forwarded().iter().sum::<u64>(), 12);
        let addr = lb.addr();
        lb.stop();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening after stop");
    }

    #[tokio::test]
    async fn with_no_backend_alive_connections_are_closed() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let lb = Balancer::start(listener, vec![dead], 8).unwrap();
        assert_eq!(ask(lb.addr()).await, None);
        assert_eq!(lb.refused(), 1);
    }

    #[tokio::test]
    async fn connections_past_the_bound_wait_for_a_place() {
        let (a, _ta) = echo(b'a').await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let lb = Balancer::start(listener, vec![a], 1).unwrap();
        let mut first = TcpStream::connect(lb.addr()).await.unwrap();
        first.write_all(b"x").await.unwrap();
        let mut b = [0u8; 2];
        first.read_exact(&mut b).await.unwrap();
        // The second waits in the backlog while the first is open...
        let second = tokio::spawn(ask(lb.addr()));
        assert_eq!(lb.forwarded(), vec![1]);
        // ...and is served once the first closes.
        drop(first);
        assert_eq!(second.await.unwrap(), Some(b'a'));
    }
}
