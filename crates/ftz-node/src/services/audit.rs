//! `ftz.v1.Audit`: the auditors' service.

use std::sync::Arc;

use ftz_audit::{
    checkpoint::TlogProof,
    entry::describe,
    offline::{log_verifier, witness_verifier},
};
use ftz_core::{KeyId, Reason};
use ftz_proto::{
    AuditEntry, CrossCheckRequest, CrossCheckResponse, GetCheckpointRequest, GetCheckpointResponse,
    GetConsistencyProofRequest, GetConsistencyProofResponse, GetEntryRequest, GetEntryResponse, KeyPurpose,
    ListCheckpointsRequest, ListCheckpointsResponse, ListEntriesRequest, ListEntriesResponse, ListEquivocationsRequest,
    ListEquivocationsResponse, ListRegistryHistoryRequest, ListRegistryHistoryResponse, RegistryInstall,
    audit_server::Audit,
};
use tonic::{Request, Response, Status};

use crate::{audit::auditor, error::ApiError, node::Node};

pub(crate) struct AuditService {
    node: Arc<Node>,
}

impl AuditService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// An entry as the auditor sees it. One that does not decode is reported as such, with its
/// bytes (an auditor's tools judge it), never fatal to the listing it is in.
fn entry(index: u64, leaf: Vec<u8>) -> Result<AuditEntry, ApiError> {
    let e = match describe(&leaf) {
        Ok((_, e)) => e,
        Err(err) => {
            tracing::error!(index, "audit entry does not decode: {err}");
            return Ok(AuditEntry {
                index,
                kind: "undecodable".into(),
                decision: "undecodable".into(),
                summary: format!("entry {index} does not decode: {err}"),
                leaf,
                ..Default::default()
            });
        }
    };
    Ok(AuditEntry {
        index,
        kind: e.kind.to_string(),
        at_ms: e.at_ms,
        zones: e.zones,
        data_class: e.data_class,
        decision: e.decision.to_string(),
        summary: e.summary,
        leaf,
    })
}

/// Pieces of evidence in one answer at most (each is two checkpoints and a proof, a few KiB).
const MAX_EVIDENCE_LISTED: usize = 100;

fn matches(e: &AuditEntry, f: &ListEntriesRequest) -> bool {
    (f.from_ms == 0 || e.at_ms >= f.from_ms)
        && (f.until_ms == 0 || e.at_ms < f.until_ms)
        && (f.zone.is_empty() || e.zones.contains(&f.zone))
        && (f.data_class.is_empty() || e.data_class == f.data_class)
        && (f.decision.is_empty() || e.decision == f.decision || e.kind == f.decision)
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list_registry_history(
        &self,
        _req: Request<ListRegistryHistoryRequest>,
    ) -> Result<Response<ListRegistryHistoryResponse>, Status> {
        let installs = self
            .node
            .core
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

    async fn list_entries(&self, req: Request<ListEntriesRequest>) -> Result<Response<ListEntriesResponse>, Status> {
        let f = req.into_inner();
        let limit = match f.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let log = self.node.log.reader();
        let size = log.size();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = f.from_index;
        // Scan at most 10 pages' worth per call, so a narrow filter cannot make a call unbounded;
        // a page's worth at a time, so an unfiltered page reads only what it answers.
        let mut scanned = 0;
        'scan: while scanned < limit * 10 && next < size {
            let chunk = log.entries(next, limit.min(limit * 10 - scanned)).map_err(ApiError::from)?;
            if chunk.is_empty() {
                break;
            }
            for (i, leaf) in chunk {
                scanned += 1;
                next = i + 1;
                let e = entry(i, leaf)?;
                if matches(&e, &f) {
                    // A page stays well within the message size, whatever the entries' sizes.
                    bytes += e.leaf.len() + e.summary.len();
                    out.push(e);
                    if out.len() >= limit || bytes >= self.node.core.limits.max_message_bytes / 2 {
                        break 'scan;
                    }
                }
            }
        }
        Ok(Response::new(ListEntriesResponse { entries: out, next_index: next.min(size), log_size: size }))
    }

    async fn get_entry(&self, req: Request<GetEntryRequest>) -> Result<Response<GetEntryResponse>, Status> {
        let index = req.into_inner().index;
        let log = self.node.log.reader();
        let leaf = log
            .entry(index)
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::new(Reason::EntryNotFound, format!("the log has no entry {index}")))?;
        let mut proof = String::new();
        if let Some((size, checkpoint)) = self.node.core.store.latest_checkpoint().map_err(ApiError::from)?
            && index < size
        {
            let hashes = log.inclusion_proof(index, size)?;
            proof = TlogProof { extra: None, index, hashes, checkpoint }.to_text();
        }
        Ok(Response::new(GetEntryResponse { entry: Some(entry(index, leaf)?), proof }))
    }

    async fn get_checkpoint(
        &self,
        _req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let (size, checkpoint) = self
            .node
            .core
            .store
            .latest_checkpoint()
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::new(Reason::EntryNotFound, "no checkpoint has been signed yet"))?;
        // The log's key in use first; then every node key the registry lists, retired ones too
        // (entries signed before a rotation need them): this zone's under the log's name, the
        // other zones' as witnesses.
        let core = &self.node.core;
        let registry = core.registry();
        let current = core.node_key.verifying_key();
        let mut keys: Vec<String> =
            log_verifier(core.zone.as_str(), current).map(|v| v.to_vkey()).into_iter().collect();
        for z in registry.zones() {
            for k in z.keys.iter().filter(|k| k.purpose == KeyPurpose::Node) {
                let v = if z.id == core.zone {
                    if k.key == current {
                        continue;
                    }
                    log_verifier(z.id.as_str(), k.key)
                } else {
                    witness_verifier(z.id.as_str(), k.key)
                };
                keys.extend(v.map(|v| v.to_vkey()));
            }
        }
        Ok(Response::new(GetCheckpointResponse { checkpoint, size, keys }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let r = req.into_inner();
        let store = &self.node.core.store;
        let proof = self.node.log.reader().consistency_proof(r.size1, r.size2)?;
        Ok(Response::new(GetConsistencyProofResponse {
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint1: store.checkpoint_at(r.size1).map_err(ApiError::from)?.unwrap_or_default(),
            checkpoint2: store.checkpoint_at(r.size2).map_err(ApiError::from)?.unwrap_or_default(),
        }))
    }

    async fn list_equivocations(
        &self,
        _req: Request<ListEquivocationsRequest>,
    ) -> Result<Response<ListEquivocationsResponse>, Status> {
        let evidence = self
            .node
            .core
            .store
            .evidence(MAX_EVIDENCE_LISTED)
            .map_err(ApiError::from)?
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e).into_owned())
            .collect();
        Ok(Response::new(ListEquivocationsResponse { evidence }))
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 20,
            n => n.min(100) as usize,
        };
        let below = (r.below_size > 0).then_some(r.below_size);
        let (checkpoints, next_below_size) = auditor::checkpoint_history(&self.node.core, below, limit)?;
        Ok(Response::new(ListCheckpointsResponse { checkpoints, next_below_size }))
    }

    async fn cross_check(&self, req: Request<CrossCheckRequest>) -> Result<Response<CrossCheckResponse>, Status> {
        let r = req.into_inner();
        let (core, log) = (self.node.core.clone(), self.node.log.clone());
        // Signatures of every uploaded transfer and a scan of this log: off the async threads.
        let answer = tokio::task::spawn_blocking(move || auditor::cross_check(&core, &log, r))
            .await
            .map_err(|e| ApiError::internal(format!("the cross-check stopped: {e}")))??;
        Ok(Response::new(answer))
    }
}
