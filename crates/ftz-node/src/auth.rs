//! Who may call what. Every request passes [`AuthLayer`] before any service sees it:
//!
//! 1. **Authenticate** the TLS client certificate against the registry in force: read the
//!    `ftz://` identity it names, find that zone in the registry, check the chain against the CA
//!    the registry lists for *that* zone, and the zone's validity.
//! 2. **Authorize** by the method's audience ([`audience`]): the node-to-node service only for
//!    other zones' nodes; each user service only for this zone's users with its role; health and
//!    reflection for any authenticated caller. A method no rule names is refused: deny by default.
//!
//! The verified [`Caller`] is put into the request's extensions for the services to read.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use ftz_core::{Identity, Principal, Reason, Role, UnixMillis};
use ftz_pki::CertUsage;
use rustls::pki_types::CertificateDer;
use tonic::Status;
use tracing::Instrument;

use crate::{
    audit::{
        AuditLog,
        events::{Refusal, log_refusal},
    },
    caller_rate::{Admission, CallerRates, RefusalLines},
    conn::ConnInfo,
    core::Core,
    error::ApiError,
    outbox::Outbox,
    users::UserRevocations,
};

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller(pub Identity);

/// Who a method is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Nodes of other zones listed in the registry.
    Peers,
    /// This zone's users holding this role.
    ZoneUsers(Role),
    /// Any authenticated caller (this zone's users, registry peers): health and reflection.
    Authenticated,
}

/// The audience of a gRPC path (`/package.Service/Method`). `None`: nobody (deny by default).
pub(crate) fn audience(path: &str) -> Option<Audience> {
    let service = path.strip_prefix('/')?.split_once('/')?.0;
    Some(match service {
        "ftz.v1.Peer" => Audience::Peers,
        "ftz.v1.Admin" => Audience::ZoneUsers(Role::Admin),
        "ftz.v1.Issuer" => Audience::ZoneUsers(Role::Issuer),
        "ftz.v1.Verify" => Audience::ZoneUsers(Role::Enterprise),
        "ftz.v1.Audit" => Audience::ZoneUsers(Role::Auditor),
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Audience::Authenticated,
        _ => return None,
    })
}

/// Verified identities are cached per exact certificate chain and registry, so the chain is
/// checked once per connection's certificate, not once per request. Bounded: cleared when full.
const CACHE_CAP: usize = 4096;

/// Certificates in a client chain at most, and their bytes.
const MAX_CHAIN: usize = 4;
const MAX_CHAIN_BYTES: usize = 32 * 1024;

struct CacheEntry {
    identity: Identity,
    registry_digest: [u8; 32],
    not_after_ms: UnixMillis,
}

/// Warning lines about refused requests a node writes a second at most, per caller (an
/// authenticated identity, or the address of a caller without one) and in all: a caller can
/// make a node refuse as fast as it can send, and a line for each would let anyone fill the
/// node's disk through its log. The rest are counted in the caller's next line; refusals are
/// audited (bounded per zone) whether or not a line is written.
const REFUSAL_LINES_PER_CALLER_PER_SECOND: u32 = 1;
const REFUSAL_LINES_PER_SECOND: u32 = 20;

pub(crate) struct Authenticator {
    core: Arc<Core>,
    log: AuditLog,
    /// Told when another zone's node calls: a sign of life for what waits for it.
    outbox: Arc<Outbox>,
    /// Certificates this zone's authority withdrew.
    users: Arc<UserRevocations>,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    rates: CallerRates,
    /// Warning lines about refusals, bounded per caller and for the whole node.
    lines: RefusalLines,
}

impl Authenticator {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, outbox: Arc<Outbox>, users: Arc<UserRevocations>) -> Self {
        Self {
            core,
            log,
            outbox,
            users,
            cache: Mutex::new(HashMap::new()),
            rates: CallerRates::default(),
            lines: RefusalLines::new(REFUSAL_LINES_PER_CALLER_PER_SECOND, REFUSAL_LINES_PER_SECOND),
        }
    }

    /// Logs a refusal of an authenticated caller (in the background: the caller's answer does
    /// not wait for the log).
    fn log_refused(&self, who: &Identity, path: &str, e: &ApiError) {
        let refusing = if who.principal == Principal::Node {
            ftz_audit::leaf::Refusing::RefusedPeer
        } else {
            ftz_audit::leaf::Refusing::RefusedUser
        };
        let (core, log, e, path, who) = (self.core.clone(), self.log.clone(), e.clone(), path.to_string(), who.clone());
        self.core.tasks.spawn(async move {
            let subject = who.to_uri();
            let zone = who.zone.to_string();
            let refusal = Refusal { other: &zone, refusing, method: &path, error: &e, class: None, subject: &subject };
            log_refusal(&core, &log, refusal).await;
        });
    }

    /// Step 1: who is this?
    pub(crate) fn authenticate(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<Identity, ApiError> {
        let certs = certs.filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::new(
                Reason::NoClientCertificate,
                "no client certificate: every caller must present one (mutual TLS)",
            )
        })?;
        // A zone CA issues its certificates directly: a chain is the certificate and at most a
        // few intermediates. A longer one is refused before any check spends work on it.
        if certs.len() > MAX_CHAIN || certs.iter().map(|c| c.len()).sum::<usize>() > MAX_CHAIN_BYTES {
            return Err(ApiError::new(
                Reason::UntrustedCertificate,
                format!("a client chain of at most {MAX_CHAIN} certificates and {MAX_CHAIN_BYTES} bytes"),
            ));
        }
        let registry = self.core.registry();
        let now = self.core.now_ms();
        let key = chain_digest(certs);
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&key)
                && hit.registry_digest == registry.digest()
                && now < hit.not_after_ms
                && registry.zone(&hit.identity.zone).is_some_and(|z| z.valid_at(now))
            {
                return Ok(hit.identity.clone());
            }
        }

        let cert = ftz_pki::identity_of(&certs[0]).map_err(|e| ApiError::new(e.reason(), e.to_string()))?;
        let identity = cert.identity;
        let zone = registry.zone(&identity.zone).ok_or_else(|| {
            ApiError::new(
                Reason::UnknownZone,
                format!(
                    "certificate names zone {}, which registry v{} does not list",
                    identity.zone,
                    registry.version()
                ),
            )
        })?;
        if !zone.valid_at(now) {
            return Err(ApiError::new(
                Reason::ZoneNotValid,
                format!("zone {} is outside its validity in registry v{}", zone.id, registry.version()),
            ));
        }
        ftz_pki::verify_chain(certs, &zone.ca_cert_der, CertUsage::Client, now).map_err(|e| {
            ApiError::new(
                Reason::UntrustedCertificate,
                format!(
                    "certificate for {identity} does not chain to the CA registry v{} lists for zone {}: {e}",
                    registry.version(),
                    zone.id
                ),
            )
        })?;

        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(
            key,
            CacheEntry {
                identity: identity.clone(),
                registry_digest: registry.digest(),
                not_after_ms: cert.not_after_ms,
            },
        );
        Ok(identity)
    }

    /// Step 2: may it call `path`?
    pub(crate) fn authorize(&self, who: &Identity, path: &str) -> Result<(), ApiError> {
        let own = &self.core.zone;
        let Some(audience) = audience(path) else {
            return Err(ApiError::new(Reason::MethodNotAllowed, format!("no rule allows calling {path}")));
        };
        match (audience, &who.principal) {
            (Audience::Peers, Principal::Node) if who.zone != *own => Ok(()),
            (Audience::Peers, Principal::Node) => {
                Err(ApiError::new(Reason::NotAPeer, "a node does not call its own node-to-node service"))
            }
            (Audience::Peers, Principal::User { .. }) => Err(ApiError::new(
                Reason::NotAPeer,
                format!("{who} is a user certificate; the node-to-node service is for other zones' nodes only"),
            )),
            (Audience::ZoneUsers(_), Principal::Node) => Err(ApiError::new(
                Reason::NotAUser,
                format!("{who} is a node certificate; {path} is for this zone's users"),
            )),
            (Audience::ZoneUsers(_) | Audience::Authenticated, Principal::User { .. }) if who.zone != *own => {
                Err(ApiError::new(
                    Reason::ForeignUser,
                    format!("{who} is a user of another zone; this node serves zone {own}"),
                ))
            }
            (Audience::ZoneUsers(needed), Principal::User { role, .. }) if *role != needed => Err(ApiError::new(
                Reason::RoleNotAllowed,
                format!("{path} needs role {needed}; the certificate has role {role}"),
            )),
            (Audience::ZoneUsers(_) | Audience::Authenticated, _) => Ok(()),
        }
    }

    /// Authenticates, then authorizes. A refusal of an authenticated caller comes with its
    /// identity, to be logged in the audit log (anonymous refusals only reach the node's log:
    /// they would let anyone fill the audit log).
    fn check(
        &self,
        certs: Option<&[CertificateDer<'_>]>,
        path: &str,
    ) -> Result<Identity, Box<(Option<Identity>, ApiError)>> {
        let who = self.authenticate(certs).map_err(|e| Box::new((None, e)))?;
        if who.zone == self.core.zone
            && let Some(leaf) = certs.and_then(|c| c.first())
            && self.users.is_withdrawn(leaf)
        {
            let e = ApiError::new(
                Reason::CertificateRevoked,
                format!("{who}'s certificate was withdrawn by zone {}", who.zone),
            );
            return Err(Box::new((Some(who), e)));
        }
        let limits = &self.core.limits;
        let per_second = limits.share(match who.principal {
            Principal::Node => limits.peer_requests_per_second,
            Principal::User { .. } => limits.user_requests_per_second,
        });
        if let Admission::Refuse { retry_after_ms, log } =
            self.rates.admit(&who.to_uri(), per_second, self.core.now_ms())
        {
            let e = ApiError::new(Reason::RateLimited, format!("{who} is over {per_second} requests a second"))
                .retry_after(i64::try_from(retry_after_ms).unwrap_or(i64::MAX));
            return Err(Box::new((log.then(|| who.clone()), e)));
        }
        self.authorize(&who, path).map_err(|e| Box::new((Some(who.clone()), e)))?;
        self.registry_in_force(path).map_err(|e| Box::new((Some(who.clone()), e)))?;
        Ok(who)
    }

    /// A node does not run on an expired registry: past its validity (or before it) only what
    /// installs the next one, and status, is served; the zones' trust has lapsed.
    fn registry_in_force(&self, path: &str) -> Result<(), ApiError> {
        let registry = self.core.registry();
        if registry.valid_at(self.core.now_ms()) || WHILE_EXPIRED.contains(&path) {
            return Ok(());
        }
        let doc = registry.document();
        Err(ApiError::new(
            Reason::RegistryExpired,
            format!(
                "registry v{} is valid from {} until {}: not now; an admin installs the next version",
                registry.version(),
                ftz_core::time::format_ms(doc.valid_from_ms),
                ftz_core::time::format_ms(doc.valid_until_ms)
            ),
        ))
    }
}

/// What a node serves while its registry is not in force.
const WHILE_EXPIRED: [&str; 4] = [
    "/ftz.v1.Admin/InstallRegistry",
    "/ftz.v1.Admin/GetRegistry",
    "/ftz.v1.Admin/GetNodeStatus",
    "/grpc.health.v1.Health/Check",
];

/// Whether the authorization table names an audience for `path` (a method anyone may be let
/// call at all).
#[cfg(test)]
pub(crate) fn has_audience(path: &str) -> bool {
    audience(path).is_some()
}

fn chain_digest(certs: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in certs {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Tower layer wrapping the whole gRPC router.
#[derive(Clone)]
pub(crate) struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub(crate) fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone)]
pub(crate) struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let info = req.extensions().get::<ConnInfo>().cloned();
        let remote = info.as_ref().and_then(|i| i.tls.get_ref().remote_addr());
        let certs = info.as_ref().and_then(|i| i.tls.peer_certs());
        match self.auth.check(certs.as_deref().map(Vec::as_slice), &path) {
            Ok(who) => {
                // A caller with a valid identity: its connection is no longer anonymous, and
                // counts against the caller's connections.
                if let Some(i) = &info
                    && !i.flags.authenticated(&who.to_uri())
                {
                    // Not closed here, so the refusal reaches the caller; still anonymous, the
                    // connection is closed by its first-call deadline.
                    let n = self.auth.core.limits.max_connections_per_caller;
                    let e = ApiError::new(Reason::RateLimited, format!("{who} holds {n} connections already"))
                        .retry_after(1000);
                    tracing::debug!(caller = %who, "connection refused: {}", e.message);
                    return Box::pin(async move { Ok(Status::from(e).into_http()) });
                }
                if who.principal == Principal::Node {
                    self.auth.outbox.peer_is_back(&who.zone);
                }
                // At debug, with the access log: at the default level a span per request would
                // format its fields for nothing (the benchmark's `observed_*_log_info` rows).
                let span = tracing::debug_span!("rpc", method = %path, caller = %who);
                req.extensions_mut().insert(Caller(who.clone()));
                // The clone that was polled ready is the one that must be called.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let auth = self.auth.clone();
                let started = std::time::Instant::now();
                Box::pin(
                    async move {
                        let resp = inner.call(req).await?;
                        let metrics = &auth.core.metrics;
                        if metrics.is_on() {
                            let (code, reason) = status_of(resp.headers());
                            metrics.request(&path, code, reason, Some(started.elapsed().as_secs_f64()));
                        }
                        // The access log, off by default (`log.level = "info,ftz_node::access=debug"`):
                        // a line per call, the status only when the answer is a refusal.
                        tracing::debug!(
                            target: "ftz_node::access",
                            method = %path,
                            caller = %who,
                            grpc_status = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0"),
                            elapsed_us = started.elapsed().as_micros() as u64,
                        );
                        Ok(undecodable_as_invalid(resp, &auth, &who, &path))
                    }
                    .instrument(span),
                )
            }
            Err(refused) => {
                let (who, e) = *refused;
                let key = match (&who, remote) {
                    (Some(who), _) => who.to_uri(),
                    (None, Some(addr)) => format!("ip:{}", addr.ip()),
                    (None, None) => String::new(),
                };
                if let Some(left_out) = self.auth.lines.admit(&key, self.auth.core.now_ms()) {
                    tracing::warn!(method = %path, caller = %key, reason = %e.reason, left_out, "refused: {}", e.message);
                }
                if let Some(who) = who {
                    self.auth.log_refused(&who, &path, &e);
                }
                let reason = e.reason;
                let status = Status::from(e);
                self.auth.core.metrics.request(&path, status.code(), Some(reason), None);
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The gRPC status code of an answer and, for a refusal, its reason (read from the status
/// details only when the code is not OK: a success costs one header lookup).
fn status_of(headers: &http::HeaderMap) -> (tonic::Code, Option<Reason>) {
    match headers.get("grpc-status").map(|v| v.as_bytes()) {
        None | Some(b"0") => (tonic::Code::Ok, None),
        Some(_) => match Status::from_header_map(headers) {
            Some(status) => (status.code(), crate::error::reason_of(&status)),
            None => (tonic::Code::Unknown, None),
        },
    }
}

/// tonic answers a request it cannot decode with INTERNAL; for the caller it is their input,
/// so it becomes INVALID_ARGUMENT `MALFORMED_REQUEST` (and, from another zone's node, a logged
/// refusal).
fn undecodable_as_invalid(
    resp: http::Response<tonic::body::Body>,
    auth: &Authenticator,
    who: &Identity,
    path: &str,
) -> http::Response<tonic::body::Body> {
    let headers = resp.headers();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"13") {
        return resp;
    }
    let Some(status) = Status::from_header_map(headers) else { return resp };
    if !status.message().starts_with("failed to decode") {
        return resp;
    }
    let e = ApiError::new(Reason::MalformedRequest, format!("the request does not decode: {}", status.message()));
    if let Some(left_out) = auth.lines.admit(&who.to_uri(), auth.core.now_ms()) {
        tracing::warn!(method = %path, caller = %who, left_out, "refused: {}", e.message);
    }
    if who.principal == Principal::Node {
        auth.log_refused(who, path, &e);
    }
    Status::from(e).into_http()
}

/// The caller of a request that passed [`AuthLayer`].
pub(crate) fn caller<T>(req: &tonic::Request<T>) -> Result<&Identity, Status> {
    req.extensions()
        .get::<Caller>()
        .map(|c| &c.0)
        .ok_or_else(|| ApiError::internal("request reached a service without passing authentication").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ftz_service_has_an_audience_and_others_none() {
        assert_eq!(audience("/ftz.v1.Peer/Ping"), Some(Audience::Peers));
        assert_eq!(audience("/ftz.v1.Admin/InstallRegistry"), Some(Audience::ZoneUsers(Role::Admin)));
        assert_eq!(audience("/ftz.v1.Issuer/ListIssuingKeys"), Some(Audience::ZoneUsers(Role::Issuer)));
        assert_eq!(audience("/ftz.v1.Verify/ListZones"), Some(Audience::ZoneUsers(Role::Enterprise)));
        assert_eq!(audience("/ftz.v1.Audit/ListRegistryHistory"), Some(Audience::ZoneUsers(Role::Auditor)));
        assert_eq!(audience("/grpc.health.v1.Health/Check"), Some(Audience::Authenticated));
        for nobody in ["/ftz.v1.Secret/Do", "/", "", "ftz.v1.Peer/Ping", "/ftz.v1.Peer", "/ftz.v2.Peer/Ping"] {
            assert_eq!(audience(nobody), None, "{nobody}");
        }
    }
}
