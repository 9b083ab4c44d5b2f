//! `ftz.v1.Peer`: what other zones' nodes may ask of this one.

use std::sync::Arc;

use ftz_proto::{
    AggregateAnswer, AggregateQuery, DeliverRequest, DeliverResponse, ExportRowsRequest, ExportRowsResponse,
    FetchRecordRequest, FetchRecordResponse, NotifyPolicyRevocationRequest, NotifyPolicyRevocationResponse,
    NotifyRevocationRequest, NotifyRevocationResponse, PingRequest, PingResponse, peer_server::Peer,
};
use tonic::{Request, Response, Status};

use crate::{auth::caller, error::ApiError, industry, ping, policies, recognition, state::NodeState};

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

    async fn fetch_record(&self, req: Request<FetchRecordRequest>) -> Result<Response<FetchRecordResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        Ok(Response::new(recognition::serve_fetch(&self.state, &from, req.into_inner()).await?))
    }

    async fn notify_revocation(
        &self,
        req: Request<NotifyRevocationRequest>,
    ) -> Result<Response<NotifyRevocationResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let status = req.into_inner().status.ok_or_else(|| ApiError::invalid("status is required"))?;
        recognition::accept_revocation(&self.state, &from, status).await?;
        Ok(Response::new(NotifyRevocationResponse {}))
    }

    async fn deliver(&self, req: Request<DeliverRequest>) -> Result<Response<DeliverResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let already = recognition::accept_delivery(&self.state, &from, req.into_inner()).await?;
        Ok(Response::new(DeliverResponse { already_delivered: already }))
    }

    async fn query_aggregate(&self, req: Request<AggregateQuery>) -> Result<Response<AggregateAnswer>, Status> {
        let from = caller(&req)?.zone.clone();
        Ok(Response::new(industry::answer_query(&self.state, &from, req.into_inner()).await?))
    }

    async fn export_rows(&self, req: Request<ExportRowsRequest>) -> Result<Response<ExportRowsResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        Ok(Response::new(industry::export_rows(&self.state, &from, req.into_inner()).await?))
    }

    async fn notify_policy_revocation(
        &self,
        req: Request<NotifyPolicyRevocationRequest>,
    ) -> Result<Response<NotifyPolicyRevocationResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let env = req.into_inner().revocation.ok_or_else(|| ApiError::invalid("revocation is required"))?;
        policies::accept_revocation(&self.state, &from, env).await?;
        Ok(Response::new(NotifyPolicyRevocationResponse {}))
    }
}
