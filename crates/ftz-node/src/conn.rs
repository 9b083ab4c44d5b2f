//! Admission of connections before they have proven who they are. Under TLS 1.3 a client
//! without a certificate finishes its handshake, so "connected" says nothing about the caller:
//! until a connection has made one authenticated call it is *unauthenticated*, and such
//! connections live in a small pool of their own with a deadline. When the pool is full, the
//! oldest unauthenticated connection (of the same source first) is closed for the new one, so a
//! flood of anonymous connections from anywhere cannot hold the slots that zones and users
//! need; a real caller's first call follows its handshake within milliseconds.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::Waker,
};

use tokio::sync::Notify;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// What a request knows of its connection: the TLS session (the client's certificates) and
/// the connection's admission flags.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub tls: TlsConnectInfo<TcpConnectInfo>,
    pub flags: Arc<ConnFlags>,
}

/// Connections per authenticated caller: a zone's node or user holding real credentials can
/// open connections as fast as anyone, and must not hold all of them.
#[derive(Debug)]
pub(crate) struct PerCaller {
    max: usize,
    counts: Mutex<std::collections::HashMap<String, usize>>,
}

impl PerCaller {
    pub(crate) fn new(max: usize) -> Self {
        Self { max: max.max(1), counts: Mutex::default() }
    }
}

/// What the server and the authentication layer know of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnFlags {
    authenticated: AtomicBool,
    /// The caller this connection counts against, once it made an authenticated call.
    owner: std::sync::OnceLock<(Arc<PerCaller>, String)>,
    per_caller: Option<Arc<PerCaller>>,
    closing: AtomicBool,
    /// Woken when the connection is to be closed: its reader and its handshake wait on these.
    reader: Mutex<Option<Waker>>,
    notify: Notify,
}

impl ConnFlags {
    /// An authenticated call of `caller` came over this connection: it leaves the
    /// unauthenticated pool and counts against the caller's connections. `false`: the caller
    /// holds its maximum already (the connection is to be closed).
    pub(crate) fn authenticated(&self, caller: &str) -> bool {
        if let Some((_, owner)) = self.owner.get() {
            return owner == caller;
        }
        if let Some(per) = &self.per_caller {
            let mut counts = per.counts.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(caller.to_string()).or_default();
            if *n >= per.max {
                return false;
            }
            *n += 1;
            let _ = self.owner.set((per.clone(), caller.to_string()));
        }
        self.authenticated.store(true, Ordering::Relaxed);
        true
    }

    /// The connection is gone: it no longer counts against its caller.
    pub(crate) fn release(&self) {
        if let Some((per, owner)) = self.owner.get() {
            let mut counts = per.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(owner);
                }
            }
        }
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// Closes the connection: its next read fails.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
        if let Some(w) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// The reader to wake when the connection is closed.
    pub(crate) fn wake_on_close(&self, w: &Waker) {
        let mut r = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if !r.as_ref().is_some_and(|old| old.will_wake(w)) {
            *r = Some(w.clone());
        }
    }

    /// Resolves when the connection is closed.
    pub(crate) async fn closed(&self) {
        let notified = self.notify.notified();
        if self.is_closing() {
            return;
        }
        notified.await;
    }
}

/// The pool of unauthenticated connections.
pub(crate) struct Pending {
    max: usize,
    per_source: usize,
    per_caller: Arc<PerCaller>,
    conns: Mutex<VecDeque<(IpAddr, Arc<ConnFlags>)>>,
}

impl Pending {
    pub(crate) fn new(max: usize, per_source: usize, per_caller: usize) -> Self {
        Self {
            max: max.max(1),
            per_source: per_source.max(1),
            per_caller: Arc::new(PerCaller::new(per_caller)),
            conns: Mutex::default(),
        }
    }

    /// A new connection from `source`; closes the ones it displaces.
    pub(crate) fn admit(&self, source: IpAddr) -> Arc<ConnFlags> {
        let flags = Arc::new(ConnFlags { per_caller: Some(self.per_caller.clone()), ..ConnFlags::default() });
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(_, f)| !f.is_authenticated() && !f.is_closing());
        if conns.iter().filter(|(ip, _)| *ip == source).count() >= self.per_source
            && let Some(i) = conns.iter().position(|(ip, _)| *ip == source)
            && let Some((_, oldest)) = conns.remove(i)
        {
            oldest.close();
        }
        if conns.len() >= self.max
            && let Some((_, oldest)) = conns.pop_front()
        {
            oldest.close();
        }
        conns.push_back((source, flags.clone()));
        flags
    }

    /// Unauthenticated connections held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|(_, f)| !f.is_authenticated() && !f.is_closing());
        conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unauthenticated_connection_makes_room_for_the_newest() {
        let p = Pending::new(4, 2, 10);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = p.admit(a);
        let a2 = p.admit(a);
        // A third from the same source closes its oldest.
        let a3 = p.admit(a);
        assert!(a1.is_closing() && !a2.is_closing() && !a3.is_closing());
        let b1 = p.admit(b);
        let b2 = p.admit(b);
        assert_eq!(p.len(), 4);
        // An authenticated connection leaves the pool and is never displaced.
        assert!(b1.authenticated("ftz://b/node"));
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let c1 = p.admit(c);
        assert!(!b1.is_closing());
        assert_eq!(p.len(), 4);
        // Full: the oldest anyone's goes.
        let c2 = p.admit(c);
        assert!(a2.is_closing());
        assert!(![&a3, &b2, &c1, &c2].iter().any(|f| f.is_closing()));
    }

    #[test]
    fn a_caller_holds_at_most_its_share_of_connections() {
        let p = Pending::new(100, 100, 2);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let (a, b, c) = (p.admit(ip), p.admit(ip), p.admit(ip));
        assert!(a.authenticated("ftz://z/admin/x") && b.authenticated("ftz://z/admin/x"));
        assert!(!c.authenticated("ftz://z/admin/x"), "a third connection of the same caller");
        assert!(c.authenticated("ftz://z/admin/y"), "another caller is not affected");
        // Calls on a counted connection count once; a closed connection frees its place.
        assert!(a.authenticated("ftz://z/admin/x"));
        a.release();
        let d = p.admit(ip);
        assert!(d.authenticated("ftz://z/admin/x"));
    }
}
