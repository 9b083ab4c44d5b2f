//! `ftz.v1.Audit`: the auditors' service.

use std::sync::Arc;

use ftz_core::KeyId;
use ftz_proto::{ListRegistryHistoryRequest, ListRegistryHistoryResponse, RegistryInstall, audit_server::Audit};
use tonic::{Request, Response, Status};

use crate::{error::ApiError, state::NodeState};

pub struct AuditService {
    state: Arc<NodeState>,
}

impl AuditService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list_registry_history(
        &self,
        _req: Request<ListRegistryHistoryRequest>,
    ) -> Result<Response<ListRegistryHistoryResponse>, Status> {
        let installs = self
            .state
            .store
            .registry_history()
            .map_err(ApiError::from)?
            .into_iter()
            .map(|h| RegistryInstall {
                version: h.version,
                installed_at_ms: h.installed_at_ms,
                envelope_digest: h.envelope_digest,
                counted_signers: h
                    .counted_signers
                    .iter()
                    .map(|k| KeyId::from_slice(k).map(|k| k.to_string()).unwrap_or_else(|_| hex::encode(k)))
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListRegistryHistoryResponse { installs }))
    }
}
