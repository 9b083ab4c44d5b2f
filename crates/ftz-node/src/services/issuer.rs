//! `ftz.v1.Issuer`: the zone's issuing bodies.

use std::sync::Arc;

use ftz_proto::{KeyPurpose, ListIssuingKeysRequest, ListIssuingKeysResponse, issuer_server::Issuer};
use tonic::{Request, Response, Status};

use crate::{services::key_summary, state::NodeState};

pub struct IssuerService {
    state: Arc<NodeState>,
}

impl IssuerService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Issuer for IssuerService {
    async fn list_issuing_keys(
        &self,
        _req: Request<ListIssuingKeysRequest>,
    ) -> Result<Response<ListIssuingKeysResponse>, Status> {
        let reg = self.state.registry();
        let keys = reg
            .zone(&self.state.zone)
            .map(|z| z.keys.iter().filter(|k| k.purpose == KeyPurpose::Issuing).map(key_summary).collect())
            .unwrap_or_default();
        Ok(Response::new(ListIssuingKeysResponse {
            zone_id: self.state.zone.to_string(),
            registry_version: reg.version(),
            keys,
        }))
    }
}
