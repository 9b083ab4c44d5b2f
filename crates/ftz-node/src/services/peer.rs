//! `ftz.v1.Peer`: what other zones' nodes may ask of this one. Every refusal of a data request
//! is logged in the audit log.

use std::sync::Arc;

use ftz_core::ZoneId;
use ftz_proto::{
    AcknowledgeRequest, AcknowledgeResponse, AggregateQuery, DataClass, DeliverRequest, DeliverResponse,
    ExportRowsRequest, FetchRecordRequest, FetchRecordResponse, NotifyPolicyRevocationRequest,
    NotifyPolicyRevocationResponse, NotifyRevocationRequest, NotifyRevocationResponse, PingRequest, PingResponse,
    SealedPayload, WitnessRequest, WitnessResponse, peer_server::Peer,
};
use prost::Message;
use tonic::{Request, Response, Status};

use ftz_audit::leaf::Refusing;

use crate::{
    audit::events::{Refusal, log_refusal},
    auth::caller,
    error::ApiError,
    node::Node,
    ping, transfer,
};

pub(crate) struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The answer, or the refusal after logging it.
    async fn audited<T>(
        &self,
        from: &ZoneId,
        method: &str,
        class: Option<DataClass>,
        subject: &str,
        res: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        match res {
            Ok(v) => Ok(Response::new(v)),
            Err(e) => {
                let refusal = Refusal {
                    other: from.as_str(),
                    refusing: Refusing::RefusedPeer,
                    method,
                    error: &e,
                    class,
                    subject,
                };
                log_refusal(&self.node.core, &self.node.log, refusal).await;
                Err(e.into())
            }
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let challenge = req.into_inner().challenge.ok_or_else(|| ApiError::invalid("challenge is required"))?;
        let s = &self.node.core;
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
        let r = req.into_inner();
        let zone = if r.issuing_zone.is_empty() { self.node.core.zone.to_string() } else { r.issuing_zone.clone() };
        let subject = format!("record {zone}/{}", r.record_id);
        let res = self.node.provider.serve_fetch(&from, r).await;
        self.audited(&from, "/ftz.v1.Peer/FetchRecord", None, &subject, res).await
    }

    async fn notify_revocation(
        &self,
        req: Request<NotifyRevocationRequest>,
    ) -> Result<Response<NotifyRevocationResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let status = req.into_inner().status.ok_or_else(|| ApiError::invalid("status is required"))?;
        self.node.provider.accept_revocation(&from, status).await?;
        Ok(Response::new(NotifyRevocationResponse {}))
    }

    async fn deliver(&self, req: Request<DeliverRequest>) -> Result<Response<DeliverResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let r = req.into_inner();
        // What the sender's intent says it is about, as the sender logs it on a refusal (the
        // intent is checked, or the delivery refused, by `accept_delivery`).
        let subject = r
            .seal
            .as_ref()
            .and_then(|s| s.intent.as_ref())
            .and_then(|i| ftz_proto::TransferIntent::decode(i.payload.as_slice()).ok())
            .map(|i| i.subject)
            .unwrap_or_default();
        let res = self
            .node
            .provider
            .accept_delivery(&from, r)
            .await
            .map(|(already, receipt)| DeliverResponse { already_delivered: already, receipt: Some(receipt) });
        self.audited(&from, "/ftz.v1.Peer/Deliver", Some(DataClass::InspectionResult), &subject, res).await
    }

    async fn query_aggregate(&self, req: Request<AggregateQuery>) -> Result<Response<SealedPayload>, Status> {
        let from = caller(&req)?.zone.clone();
        let res = self.node.industry.answer_query(&from, req.into_inner()).await;
        self.audited(&from, "/ftz.v1.Peer/QueryAggregate", Some(DataClass::IndustryData), "aggregate", res).await
    }

    async fn export_rows(&self, req: Request<ExportRowsRequest>) -> Result<Response<SealedPayload>, Status> {
        let from = caller(&req)?.zone.clone();
        let res = self.node.industry.export_rows(&from, req.into_inner()).await;
        self.audited(&from, "/ftz.v1.Peer/ExportRows", Some(DataClass::IndustryData), "rows", res).await
    }

    async fn notify_policy_revocation(
        &self,
        req: Request<NotifyPolicyRevocationRequest>,
    ) -> Result<Response<NotifyPolicyRevocationResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let env = req.into_inner().revocation.ok_or_else(|| ApiError::invalid("revocation is required"))?;
        self.node.policies.accept_revocation(&from, env).await?;
        Ok(Response::new(NotifyPolicyRevocationResponse {}))
    }

    async fn acknowledge(&self, req: Request<AcknowledgeRequest>) -> Result<Response<AcknowledgeResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        let r = req.into_inner();
        let (intent, receipt) = match (r.intent, r.receipt) {
            (Some(i), Some(c)) => (i, c),
            _ => return Err(ApiError::invalid("intent and receipt are required").into()),
        };
        transfer::acknowledged(&self.node.core, &self.node.log, &from, &intent, &receipt).await?;
        Ok(Response::new(AcknowledgeResponse {}))
    }

    async fn witness(&self, req: Request<WitnessRequest>) -> Result<Response<WitnessResponse>, Status> {
        let from = caller(&req)?.zone.clone();
        Ok(Response::new(self.node.witness.cosign(&from, req.into_inner()).await?))
    }
}
