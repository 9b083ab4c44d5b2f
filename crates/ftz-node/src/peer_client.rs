//! Channels to other zones' nodes. One warm HTTP/2 connection per zone, reused by every call,
//! rebuilt when the registry changes (a new endpoint or CA must take effect at once).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use ftz_core::{Reason, ZoneId};
use ftz_proto::peer_client::PeerClient;
use tonic::transport::{Channel, Endpoint};

use crate::{
    error::ApiError,
    state::NodeState,
    tls::{ExpectedServer, TlsConnector, client_config},
};

#[derive(Default)]
pub struct PeerClients {
    channels: Mutex<HashMap<ZoneId, Channel>>,
}

impl PeerClients {
    /// Forgets every channel; called when a new registry is installed.
    pub(crate) fn clear(&self) {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A client for zone `zone`'s node, with this node's limits applied.
    pub fn client(&self, state: &NodeState, zone: &ZoneId) -> Result<PeerClient<Channel>, ApiError> {
        let channel = {
            let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(zone) {
                Some(c) => c.clone(),
                None => {
                    let c = connect(state, zone)?;
                    map.insert(zone.clone(), c.clone());
                    c
                }
            }
        };
        let max = state.limits.max_message_bytes;
        Ok(PeerClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max))
    }
}

/// A lazily connecting channel to `zone`: nothing touches the network until the first call.
fn connect(state: &NodeState, zone: &ZoneId) -> Result<Channel, ApiError> {
    let registry = state.registry();
    let entry = registry.zone(zone).ok_or_else(|| {
        ApiError::new(Reason::NoSuchZone, format!("zone {zone} is not listed in registry v{}", registry.version()))
    })?;
    if *zone == state.zone {
        return Err(ApiError::invalid("a node does not call itself over Peer"));
    }
    let expect = ExpectedServer { zone: zone.clone(), ca_der: entry.ca_cert_der.clone(), clock: state.clock.clone() };
    let tls = client_config(expect, state.tls_chain.clone(), state.tls_key())
        .map_err(|e| ApiError::internal(format!("TLS client config for zone {zone}: {e}")))?;
    let limits = &state.limits;
    let endpoint = Endpoint::from_shared(format!("http://{}", entry.endpoint))
        .map_err(|e| ApiError::new(Reason::PeerUnavailable, format!("zone {zone} endpoint {:?}: {e}", entry.endpoint)))?
        .connect_timeout(Duration::from_millis(limits.peer_connect_timeout_ms))
        .timeout(Duration::from_millis(limits.peer_request_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_with_connector_lazy(TlsConnector::new(tls, zone)))
}
