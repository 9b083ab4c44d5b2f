//! Calling other zones' nodes. One warm HTTP/2 connection per zone, reused by every call, and
//! rebuilt when the registry in force changes (a new endpoint or CA must take effect at once).
//! Also how a peer's failure is reported to this node's own caller.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use ftz_client::tls::{ExpectedServer, TlsConnector, client_config};
use ftz_core::{Reason, ZoneId};
use ftz_proto::peer_client::PeerClient;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Channel, Endpoint};

use crate::{
    core::Core,
    error::{ApiError, reason_of, status_meta},
};

/// The channels, valid for one registry (by digest).
#[derive(Default)]
struct Channels {
    registry: [u8; 32],
    by_zone: HashMap<ZoneId, Channel>,
}

pub(crate) struct PeerClients {
    core: Arc<Core>,
    /// The node's TLS identity, presented to the nodes it calls.
    tls_chain: Vec<CertificateDer<'static>>,
    tls_key: PrivateKeyDer<'static>,
    channels: Mutex<Channels>,
}

impl PeerClients {
    pub(crate) fn new(
        core: Arc<Core>,
        tls_chain: Vec<CertificateDer<'static>>,
        tls_key: PrivateKeyDer<'static>,
    ) -> Self {
        Self { core, tls_chain, tls_key, channels: Mutex::default() }
    }

    /// A client for zone `zone`'s node, with this node's limits applied.
    pub(crate) fn client(&self, zone: &ZoneId) -> Result<PeerClient<Channel>, ApiError> {
        let registry = self.core.registry();
        if !registry.valid_at(self.core.now_ms()) {
            return Err(ApiError::new(
                Reason::RegistryExpired,
                format!(
                    "registry v{} is not in force: no zone is called until the next is installed",
                    registry.version()
                ),
            ));
        }
        let channel = {
            let mut ch = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            if ch.registry != registry.digest() {
                *ch = Channels { registry: registry.digest(), by_zone: HashMap::new() };
            }
            match ch.by_zone.get(zone) {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect(&registry, zone)?;
                    ch.by_zone.insert(zone.clone(), c.clone());
                    c
                }
            }
        };
        let max = self.core.limits.max_message_bytes;
        Ok(PeerClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max))
    }

    /// A lazily connecting channel to `zone`: nothing touches the network until the first call.
    fn connect(&self, registry: &ftz_core::Registry, zone: &ZoneId) -> Result<Channel, ApiError> {
        let entry = registry.zone(zone).ok_or_else(|| {
            ApiError::new(Reason::NoSuchZone, format!("zone {zone} is not listed in registry v{}", registry.version()))
        })?;
        if *zone == self.core.zone {
            return Err(ApiError::invalid("a node does not call itself over Peer"));
        }
        let expect =
            ExpectedServer { zone: zone.clone(), ca_der: entry.ca_cert_der.clone(), clock: self.core.clock.clone() };
        let tls = client_config(expect, self.tls_chain.clone(), self.tls_key.clone_key())
            .map_err(|e| ApiError::internal(format!("TLS client config for zone {zone}: {e}")))?;
        let limits = &self.core.limits;
        let endpoint = Endpoint::from_shared(format!("http://{}", entry.endpoint))
            .map_err(|e| {
                ApiError::new(Reason::PeerUnavailable, format!("zone {zone} endpoint {:?}: {e}", entry.endpoint))
            })?
            .connect_timeout(Duration::from_millis(limits.peer_connect_timeout_ms))
            .timeout(Duration::from_millis(limits.peer_request_timeout_ms))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_with_connector_lazy(TlsConnector::new(tls, zone)))
    }
}

/// A failed call to a peer, as this node reports it to its own caller: PEER_REFUSED with the
/// peer's reason in the message and in the `peer_reason` metadata when the peer gave one,
/// PEER_UNAVAILABLE otherwise. The peer's code is not passed through (UNAUTHENTICATED from a
/// peer says nothing about our own caller), except for rate and budget refusals.
pub(crate) fn peer_failure(zone: &ZoneId, s: &tonic::Status) -> ApiError {
    match reason_of(s) {
        Some(r) => {
            // Rate and budget refusals are about the caller's own usage: they keep their reason
            // (RESOURCE_EXHAUSTED, with the retry hint) so clients back off instead of failing.
            let relayed =
                if matches!(r, Reason::RateLimited | Reason::BudgetExhausted) { r } else { Reason::PeerRefused };
            let mut e = ApiError::new(relayed, format!("zone {zone} refused: {r}: {}", s.message()))
                .with_meta("peer_reason", r.as_str())
                .with_meta("peer_zone", zone.as_str());
            if let Some(ms) = status_meta(s, "retry_after_ms").and_then(|v| v.parse().ok()) {
                e = e.retry_after(ms);
            }
            e
        }
        None => {
            ApiError::new(Reason::PeerUnavailable, format!("zone {zone} unreachable: {}: {}", s.code(), s.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_refusal_is_relayed_with_its_reason_but_not_its_code() {
        let z = ZoneId::new("hainan").unwrap();
        let refused: tonic::Status = ApiError::new(Reason::NoPolicy, "no").into();
        let e = peer_failure(&z, &refused);
        assert_eq!(e.reason, Reason::PeerRefused);
        assert!(e.metadata.contains(&("peer_reason".into(), "NO_POLICY".into())));
        let limited: tonic::Status = ApiError::new(Reason::RateLimited, "slow down").retry_after(250).into();
        let e = peer_failure(&z, &limited);
        assert_eq!((e.reason, e.retry_after_ms), (Reason::RateLimited, Some(250)));
        assert_eq!(peer_failure(&z, &tonic::Status::unavailable("conn refused")).reason, Reason::PeerUnavailable);
    }
}
