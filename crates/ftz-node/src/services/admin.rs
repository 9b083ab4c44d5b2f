//! `ftz.v1.Admin`: the zone IT department's service.

use std::sync::Arc;

use ftz_core::{Registry, ZoneId};
use ftz_policy::Agreement;
use ftz_proto::{
    AgreementSummary, GetNodeStatusRequest, GetRegistryRequest, GetRegistryResponse, InstallAgreementRequest,
    InstallAgreementResponse, InstallRegistryRequest, InstallRegistryResponse, ListAgreementsRequest,
    ListAgreementsResponse, NodeStatus, PingPeerRequest, PingPeerResponse, admin_server::Admin,
};
use tonic::{Request, Response, Status};

use crate::{agreements, error::ApiError, federation, ping, state::NodeState};

pub struct AdminService {
    state: Arc<NodeState>,
}

impl AdminService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn install_registry(
        &self,
        req: Request<InstallRegistryRequest>,
    ) -> Result<Response<InstallRegistryResponse>, Status> {
        let env = req.into_inner().registry.ok_or_else(|| ApiError::invalid("registry is required"))?;
        let candidate = Registry::parse(env).map_err(ApiError::from)?;
        let report = federation::install(&self.state, candidate).await.inspect_err(|e| {
            tracing::warn!(reason = %e.reason, "registry refused: {}", e.message);
        })?;
        Ok(Response::new(InstallRegistryResponse {
            installed_version: report.installed_version,
            previous_version: report.previous_version,
            already_installed: report.already_installed,
            counted_signers: report.counted_signers,
        }))
    }

    async fn get_registry(&self, _req: Request<GetRegistryRequest>) -> Result<Response<GetRegistryResponse>, Status> {
        let reg = self.state.registry();
        let installed_at_ms =
            self.state.store.current_registry().map_err(ApiError::from)?.map(|s| s.installed_at_ms).unwrap_or_default();
        Ok(Response::new(GetRegistryResponse {
            registry: Some(reg.envelope().clone()),
            version: reg.version(),
            installed_at_ms,
        }))
    }

    async fn get_node_status(&self, _req: Request<GetNodeStatusRequest>) -> Result<Response<NodeStatus>, Status> {
        let s = &self.state;
        let reg = s.registry();
        Ok(Response::new(NodeStatus {
            zone_id: s.zone.to_string(),
            federation_id: reg.federation_id().to_string(),
            registry_version: reg.version(),
            node_key_id: s.node_key.key_id().to_string(),
            listen_address: s.listen_addr.to_string(),
            started_at_ms: s.started_at_ms,
            now_ms: s.now_ms(),
            peer_zones: reg.zones().filter(|z| z.id != s.zone).map(|z| z.id.to_string()).collect(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn ping_peer(&self, req: Request<PingPeerRequest>) -> Result<Response<PingPeerResponse>, Status> {
        let zone = ZoneId::new(req.into_inner().zone_id).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(Response::new(ping::ping_peer(&self.state, &zone).await?))
    }

    async fn install_agreement(
        &self,
        req: Request<InstallAgreementRequest>,
    ) -> Result<Response<InstallAgreementResponse>, Status> {
        let env = req.into_inner().agreement.ok_or_else(|| ApiError::invalid("agreement is required"))?;
        let candidate = Agreement::parse(env).map_err(ApiError::from)?;
        let (a, already) = agreements::install(&self.state, candidate).await.inspect_err(|e| {
            tracing::warn!(reason = %e.reason, "agreement refused: {}", e.message);
        })?;
        Ok(Response::new(InstallAgreementResponse {
            agreement_id: a.id().to_string(),
            version: a.version(),
            already_installed: already,
        }))
    }

    async fn list_agreements(
        &self,
        _req: Request<ListAgreementsRequest>,
    ) -> Result<Response<ListAgreementsResponse>, Status> {
        let mut list: Vec<AgreementSummary> = self
            .state
            .agreements()
            .iter()
            .map(|a| AgreementSummary {
                agreement_id: a.id().to_string(),
                version: a.version(),
                from_zone: a.from.to_string(),
                to_zone: a.to.to_string(),
                valid_from_ms: a.doc.valid_from_ms,
                valid_until_ms: a.doc.valid_until_ms,
                rules: a.describe_rules(),
                agreement: Some(a.envelope.clone()),
            })
            .collect();
        list.sort_by(|a, b| a.agreement_id.cmp(&b.agreement_id));
        Ok(Response::new(ListAgreementsResponse { agreements: list }))
    }
}
