//! `ftz.v1.Verify`: the enterprises' service.

use std::sync::Arc;

use ftz_proto::{ListZonesRequest, ListZonesResponse, verify_server::Verify};
use tonic::{Request, Response, Status};

use crate::{services::zone_summary, state::NodeState};

pub struct VerifyService {
    state: Arc<NodeState>,
}

impl VerifyService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Verify for VerifyService {
    async fn list_zones(&self, _req: Request<ListZonesRequest>) -> Result<Response<ListZonesResponse>, Status> {
        let reg = self.state.registry();
        Ok(Response::new(ListZonesResponse {
            registry_version: reg.version(),
            zones: reg.zones().map(zone_summary).collect(),
        }))
    }
}
