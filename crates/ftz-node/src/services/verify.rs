//! `ftz.v1.Verify`: the enterprises' service.

use std::sync::Arc;

use ftz_core::ZoneId;
use ftz_proto::{
    AggregateAnswer, ExportBundleRequest, ExportBundleResponse, ExportRowsAnswer, ExportRowsRequest,
    FetchIndustryRowsRequest, FindInspectionsRequest, FindInspectionsResponse, ListZonesRequest, ListZonesResponse,
    QueryIndustryDataRequest, RecordRef, VerificationResult, VerifyBundleRequest, VerifyBundleResponse,
    VerifyRecordRequest, verify_record_request, verify_server::Verify,
};
use tonic::{Request, Response, Status};

use crate::{
    error::ApiError,
    node::Node,
    recognition::{Checked, Subject},
    services::{verification_result, zone_summary},
};

pub(crate) struct VerifyService {
    node: Arc<Node>,
}

impl VerifyService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The recognising zone of a request: this node's zone unless another is named.
    fn recognising(&self, z: &str) -> Result<ZoneId, ApiError> {
        if z.is_empty() {
            Ok(self.node.core.zone.clone())
        } else {
            ZoneId::new(z).map_err(|e| ApiError::invalid(e.to_string()))
        }
    }
}

fn ref_parts(r: RecordRef) -> Result<(ZoneId, String), ApiError> {
    let zone = ZoneId::new(r.issuing_zone).map_err(|e| ApiError::invalid(format!("issuing_zone: {e}")))?;
    ftz_core::records::check_id("record_id", &r.record_id)?;
    Ok((zone, r.record_id))
}

#[tonic::async_trait]
impl Verify for VerifyService {
    async fn list_zones(&self, _req: Request<ListZonesRequest>) -> Result<Response<ListZonesResponse>, Status> {
        let reg = self.node.core.registry();
        Ok(Response::new(ListZonesResponse {
            registry_version: reg.version(),
            zones: reg.zones().map(zone_summary).collect(),
        }))
    }

    async fn verify_record(&self, req: Request<VerifyRecordRequest>) -> Result<Response<VerificationResult>, Status> {
        let r = req.into_inner();
        let subject = match r.subject {
            Some(verify_record_request::Subject::Ref(rf)) => {
                let (zone, record_id) = ref_parts(rf)?;
                Subject::Ref { zone, record_id }
            }
            Some(verify_record_request::Subject::Record(env)) => Subject::Supplied(env),
            None => return Err(ApiError::invalid("name the record (ref) or give it (record)").into()),
        };
        let zone = self.recognising(&r.recognising_zone)?;
        let checked = self.node.verifier.check(subject, &zone, &r.purpose).await?;
        Ok(Response::new(verification_result(checked)))
    }

    async fn find_inspections(
        &self,
        req: Request<FindInspectionsRequest>,
    ) -> Result<Response<FindInspectionsResponse>, Status> {
        let r = req.into_inner();
        let zone = self.recognising(&r.recognising_zone)?;
        let found = self.node.verifier.find_inspections(&r.lot_id, &zone, &r.purpose).await?;
        Ok(Response::new(FindInspectionsResponse { results: found.into_iter().map(verification_result).collect() }))
    }

    async fn export_bundle(&self, req: Request<ExportBundleRequest>) -> Result<Response<ExportBundleResponse>, Status> {
        let r = req.into_inner();
        let (zone, record_id) = ref_parts(r.r#ref.unwrap_or_default())?;
        let recognising = self.recognising(&r.recognising_zone)?;
        let bundle = self.node.verifier.export_bundle(zone, record_id, &recognising, &r.purpose).await?;
        Ok(Response::new(ExportBundleResponse { bundle: Some(bundle) }))
    }

    async fn verify_bundle(&self, req: Request<VerifyBundleRequest>) -> Result<Response<VerifyBundleResponse>, Status> {
        let bytes = req.into_inner().bundle;
        if bytes.is_empty() {
            return Err(ApiError::invalid("bundle is required: the bytes of a bundle file").into());
        }
        let (check, anchor) = self.node.verifier.verify_bundle(&bytes)?;
        let max_status_age_ms = check.max_status_age_ms;
        let result = verification_result(Checked {
            verdict: check.verdict,
            record: check.record,
            status: None,
            source: "bundle",
        });
        Ok(Response::new(VerifyBundleResponse {
            result: Some(result),
            exporting_zone: check.exporting_zone,
            exported_at_ms: check.exported_at_ms,
            registry_version: check.registry_version,
            bundle_recognising_zone: check.bundle_recognising_zone,
            agreements: u32::try_from(check.agreements).unwrap_or(u32::MAX),
            max_status_age_ms,
            anchor_key_id: anchor.to_string(),
        }))
    }

    async fn query_industry_data(
        &self,
        req: Request<QueryIndustryDataRequest>,
    ) -> Result<Response<AggregateAnswer>, Status> {
        let r = req.into_inner();
        let provider = crate::industry::check_provider(&r.provider_zone)?;
        let q = r.query.ok_or_else(|| ApiError::invalid("query is required"))?;
        Ok(Response::new(self.node.industry.query(&provider, q).await?))
    }

    async fn fetch_industry_rows(
        &self,
        req: Request<FetchIndustryRowsRequest>,
    ) -> Result<Response<ExportRowsAnswer>, Status> {
        let r = req.into_inner();
        let provider = crate::industry::check_provider(&r.provider_zone)?;
        let answer = self
            .node
            .industry
            .fetch_rows(&provider, ExportRowsRequest { filters: r.filters, purpose: r.purpose, limit: r.limit })
            .await?;
        Ok(Response::new(answer))
    }
}
