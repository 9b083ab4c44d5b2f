//! `ftz.v1.Issuer`: the zone's issuing bodies.

use std::sync::Arc;

use ftz_core::records::record_digest;
use ftz_proto::{
    ImportRowsRequest, ImportRowsResponse, IssueCertificationRequest, IssueResponse, KeyPurpose,
    ListIssuingKeysRequest, ListIssuingKeysResponse, PushInspectionRequest, PushInspectionResponse,
    RecordInspectionRequest, RevokeRequest, RevokeResponse, issuer_server::Issuer,
};
use tonic::{Request, Response, Status};

use crate::{error::ApiError, issuing, node::Node, services::key_summary};

pub(crate) struct IssuerService {
    node: Arc<Node>,
}

impl IssuerService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn issued(o: issuing::IssueOutcome) -> Response<IssueResponse> {
    Response::new(IssueResponse {
        record_digest: record_digest(&o.envelope).to_vec(),
        record: Some(o.envelope),
        already_issued: o.already_issued,
    })
}

#[tonic::async_trait]
impl Issuer for IssuerService {
    async fn list_issuing_keys(
        &self,
        _req: Request<ListIssuingKeysRequest>,
    ) -> Result<Response<ListIssuingKeysResponse>, Status> {
        let reg = self.node.core.registry();
        let keys = reg
            .zone(&self.node.core.zone)
            .map(|z| z.keys.iter().filter(|k| k.purpose == KeyPurpose::Issuing).map(key_summary).collect())
            .unwrap_or_default();
        Ok(Response::new(ListIssuingKeysResponse {
            zone_id: self.node.core.zone.to_string(),
            registry_version: reg.version(),
            keys,
        }))
    }

    async fn issue_certification(
        &self,
        req: Request<IssueCertificationRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let c = req.into_inner().certification.ok_or_else(|| ApiError::invalid("certification is required"))?;
        let record = self.node.issuer.own_certification(c)?;
        Ok(issued(self.node.issuer.issue(record).await?))
    }

    async fn record_inspection(
        &self,
        req: Request<RecordInspectionRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let r = req.into_inner().result.ok_or_else(|| ApiError::invalid("result is required"))?;
        let record = self.node.issuer.own_inspection(r)?;
        Ok(issued(self.node.issuer.issue(record).await?))
    }

    async fn revoke(&self, req: Request<RevokeRequest>) -> Result<Response<RevokeResponse>, Status> {
        let r = req.into_inner();
        let o = self.node.issuer.revoke(&r.record_id, &r.reason).await?;
        Ok(Response::new(RevokeResponse {
            revocation: Some(o.revocation),
            already_revoked: o.already_revoked,
            notified_zones: o.notified,
            pending_zones: o.pending,
        }))
    }

    async fn push_inspection(
        &self,
        req: Request<PushInspectionRequest>,
    ) -> Result<Response<PushInspectionResponse>, Status> {
        let r = req.into_inner();
        let out = self.node.issuer.push(&r.record_id, &r.to_zone, &r.purpose).await?;
        Ok(Response::new(PushInspectionResponse {
            to_zone: r.to_zone,
            already_delivered: out.already_delivered,
            queued: out.queued,
        }))
    }

    async fn import_rows(&self, req: Request<ImportRowsRequest>) -> Result<Response<ImportRowsResponse>, Status> {
        let (imported, total) = self.node.industry.import(req.into_inner().rows).await?;
        Ok(Response::new(ImportRowsResponse { imported, total_rows: total }))
    }
}
