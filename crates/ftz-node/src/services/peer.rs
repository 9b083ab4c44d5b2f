//! `ftz.v1.Peer`: what other zones' nodes may ask of this one.

use std::sync::Arc;

use ftz_proto::{PingRequest, PingResponse, peer_server::Peer};
use tonic::{Request, Response, Status};

use crate::{auth::caller, error::ApiError, ping, state::NodeState};

pub struct PeerService {
    state: Arc<NodeState>,
}

impl PeerService {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let challenge = req.into_inner().challenge.ok_or_else(|| ApiError::invalid("challenge is required"))?;
        let s = &self.state;
        let answer = ping::answer(
            &challenge,
            &from,
            &s.zone,
            &s.registry(),
            &s.node_key,
            s.now_ms(),
            s.limits.max_clock_skew_ms,
        )?;
        tracing::debug!(peer = %from, "answered ping");
        Ok(Response::new(PingResponse { answer: Some(answer) }))
    }
}
