//! A whole federation on 127.0.0.1 in this process: the demo and the multi-node tests start
//! real nodes (real mTLS, real stores) this way. Ports come from the OS: listeners are bound
//! first, then the registry is written with their addresses, then the nodes start on them.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use ftz_core::{Clock, Role, ZoneId};
use tonic::transport::Channel;

use ftz_client::{ClientError, ClientProfile};
use ftz_node::{NodeConfig, NodeOptions, RunningNode, StartError};

use crate::dev::{self, DevError, DevFederation, DevSpec, DevZoneSpec};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Dev(#[from] DevError),
    #[error("zone {zone}: {source}")]
    Start { zone: String, source: StartError },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Other(String),
}

pub struct LocalFederation {
    pub fed: DevFederation,
    clock: Arc<dyn Clock>,
    nodes: BTreeMap<ZoneId, RunningNode>,
    /// Where nodes behind a front (a test's proxy) really listen; the registry names the front.
    listen: BTreeMap<ZoneId, String>,
    /// Changes every node's configuration before it starts (benchmarks raise the limits).
    tune: Option<Tune>,
}

/// A change to a node's configuration, applied at every start.
pub type Tune = Arc<dyn Fn(&mut NodeConfig) + Send + Sync>;

impl LocalFederation {
    /// Creates a development federation of `zones` under `root` and starts every node.
    pub async fn start(zones: &[&str], root: &Path, clock: Arc<dyn Clock>) -> Result<Self, LocalError> {
        Self::start_with_fronts(zones, root, clock, &BTreeMap::new()).await
    }

    /// The same, each node's configuration changed by `tune` before every start.
    pub async fn start_tuned(
        zones: &[&str],
        root: &Path,
        clock: Arc<dyn Clock>,
        tune: Tune,
    ) -> Result<Self, LocalError> {
        Self::start_inner(zones, root, clock, &BTreeMap::new(), Some(tune)).await
    }

    /// The same, but the registry lists `fronts[zone]` as the endpoint of that zone (a proxy a
    /// test puts in front of it, to cut and heal links); the node itself listens elsewhere
    /// ([`RunningNode::local_addr`] says where).
    pub async fn start_with_fronts(
        zones: &[&str],
        root: &Path,
        clock: Arc<dyn Clock>,
        fronts: &BTreeMap<String, String>,
    ) -> Result<Self, LocalError> {
        Self::start_inner(zones, root, clock, fronts, None).await
    }

    async fn start_inner(
        zones: &[&str],
        root: &Path,
        clock: Arc<dyn Clock>,
        fronts: &BTreeMap<String, String>,
        tune: Option<Tune>,
    ) -> Result<Self, LocalError> {
        let mut listeners = Vec::new();
        let mut specs = Vec::new();
        let mut listen = BTreeMap::new();
        for z in zones {
            let id = ZoneId::new(*z).map_err(|e| LocalError::Other(e.to_string()))?;
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::Other(format!("bind: {e}")))?;
            let addr = l.local_addr().map_err(|e| LocalError::Other(e.to_string()))?.to_string();
            let endpoint = match fronts.get(*z) {
                Some(front) => {
                    listen.insert(id.clone(), addr);
                    front.clone()
                }
                None => addr,
            };
            let h = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::Other(format!("bind: {e}")))?;
            let http_endpoint = Some(h.local_addr().map_err(|e| LocalError::Other(e.to_string()))?.to_string());
            let o = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::Other(format!("bind: {e}")))?;
            let ops_endpoint = Some(o.local_addr().map_err(|e| LocalError::Other(e.to_string()))?.to_string());
            specs.push(DevZoneSpec {
                display_name: dev::display_name(z),
                id: id.clone(),
                endpoint,
                http_endpoint,
                ops_endpoint,
            });
            listeners.push((id, l, h, o));
        }
        let spec = DevSpec {
            federation_id: "ftz-local".into(),
            quorum: (zones.len() / 2 + 1) as u32,
            zones: specs,
            validity_days: 365,
            now_ms: clock.now_ms(),
        };
        let fed = dev::create(&spec, root)?;
        let mut me = Self { fed, clock, nodes: BTreeMap::new(), listen, tune };
        for (id, l, h, o) in listeners {
            me.start_node(&id, Some((l, h, o))).await?;
        }
        Ok(me)
    }

    /// Starts `zone`'s node, on `listeners` (gRPC, HTTPS) already bound, or else on the
    /// addresses of its config.
    async fn start_node(
        &mut self,
        zone: &ZoneId,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener, std::net::TcpListener)>,
    ) -> Result<(), LocalError> {
        let dz = self.fed.zone(zone.as_str()).ok_or_else(|| LocalError::Other(format!("no zone {zone}")))?;
        let err = |source| LocalError::Start { zone: zone.to_string(), source };
        let mut cfg = NodeConfig::load(&dz.config_path).map_err(|e| err(e.into()))?;
        if let Some(addr) = self.listen.get(zone) {
            cfg.listen = addr.clone();
        }
        if let Some(tune) = &self.tune {
            tune(&mut cfg);
        }
        let (listener, http_listener, ops_listener) =
            listeners.map_or((None, None, None), |(l, h, o)| (Some(l), Some(h), Some(o)));
        let opts = NodeOptions { clock: self.clock.clone(), listener, http_listener, ops_listener };
        let node = ftz_node::start(&cfg, opts).await.map_err(err)?;
        self.nodes.insert(zone.clone(), node);
        Ok(())
    }

    pub fn zones(&self) -> impl Iterator<Item = &ZoneId> {
        self.fed.zones.iter().map(|z| &z.id)
    }

    pub fn node(&self, zone: &str) -> Option<&RunningNode> {
        self.nodes.iter().find(|(z, _)| z.as_str() == zone).map(|(_, n)| n)
    }

    /// Stops one node gracefully (its store is flushed).
    pub async fn stop(&mut self, zone: &str) -> Result<(), LocalError> {
        let id = ZoneId::new(zone).map_err(|e| LocalError::Other(e.to_string()))?;
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await.map_err(|e| LocalError::Other(e.to_string()))?;
        }
        Ok(())
    }

    /// Starts a stopped node again on the same address, from its data directory.
    pub async fn restart(&mut self, zone: &str) -> Result<(), LocalError> {
        self.stop(zone).await?;
        let id = ZoneId::new(zone).map_err(|e| LocalError::Other(e.to_string()))?;
        self.start_node(&id, None).await
    }

    pub fn profile(&self, zone: &str, role: Role) -> Result<ClientProfile, LocalError> {
        let dz = self.fed.zone(zone).ok_or_else(|| LocalError::Other(format!("no zone {zone}")))?;
        Ok(ClientProfile::load(&dz.profile_path(role))?)
    }

    /// A channel to `zone`'s node as its development user with `role`.
    pub fn user_channel(&self, zone: &str, role: Role) -> Result<Channel, LocalError> {
        Ok(self.profile(zone, role)?.channel_with_clock(Duration::from_secs(10), self.clock.clone())?)
    }

    /// Signs `doc` with both zones' authorities and installs it on both zones' nodes.
    pub async fn install_agreement(
        &self,
        doc: &ftz_proto::RecognitionAgreement,
    ) -> Result<ftz_proto::Envelope, LocalError> {
        install_agreement(&self.fed, doc, |z| self.user_channel(z, Role::Admin)).await
    }

    /// Signs `doc` with the provider's and every consumer's authority and installs it on the
    /// nodes of all of them (and of the onward zones it names).
    pub async fn install_policy(&self, doc: &ftz_proto::ExchangePolicy) -> Result<ftz_proto::Envelope, LocalError> {
        install_policy(&self.fed, doc, |z| {
            if self.node(z).is_some() { self.user_channel(z, Role::Admin).map(Some) } else { Ok(None) }
        })
        .await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        let zones: Vec<String> = self.nodes.keys().map(ToString::to_string).collect();
        for z in zones {
            if let Err(e) = self.stop(&z).await {
                tracing::warn!(zone = %z, "stopping node: {e}");
            }
        }
    }
}

/// Signs an agreement with both zones' authorities and installs it through each zone's admin
/// channel (`admin(zone)`).
pub async fn install_agreement(
    fed: &DevFederation,
    doc: &ftz_proto::RecognitionAgreement,
    admin: impl Fn(&str) -> Result<Channel, LocalError>,
) -> Result<ftz_proto::Envelope, LocalError> {
    let env = dev::sign_agreement(fed, doc)?;
    for z in [&doc.from_zone, &doc.to_zone] {
        ftz_proto::admin_client::AdminClient::new(admin(z)?)
            .install_agreement(ftz_proto::InstallAgreementRequest { agreement: Some(env.clone()) })
            .await
            .map_err(|s| {
                LocalError::Other(format!("installing agreement {} on {z}: {}", doc.agreement_id, s.message()))
            })?;
    }
    Ok(env)
}

/// Signs a policy with every party's authority and installs it through the admin channel of
/// every zone it names that runs (`admin(zone)` gives `None` for the others).
pub async fn install_policy(
    fed: &DevFederation,
    doc: &ftz_proto::ExchangePolicy,
    admin: impl Fn(&str) -> Result<Option<Channel>, LocalError>,
) -> Result<ftz_proto::Envelope, LocalError> {
    let env = dev::sign_policy(fed, doc)?;
    let zones = std::iter::once(&doc.provider_zone).chain(doc.consumer_zones.iter()).chain(doc.onward_zones.iter());
    for z in zones {
        let Some(channel) = admin(z)? else { continue };
        ftz_proto::admin_client::AdminClient::new(channel)
            .install_policy(ftz_proto::InstallPolicyRequest { policy: Some(env.clone()) })
            .await
            .map_err(|s| LocalError::Other(format!("installing policy {} on {z}: {}", doc.policy_id, s.message())))?;
    }
    Ok(env)
}
