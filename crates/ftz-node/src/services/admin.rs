//! `ftz.v1.Admin`: the zone IT department's service.

use std::sync::Arc;

use ftz_core::{Reason, Registry, ZoneId};
use ftz_policy::Agreement;
use ftz_proto::{
    AgreementSummary, BackupChunk, BackupRequest, ExplainPolicyRequest, ExplainPolicyResponse, GetNodeStatusRequest,
    GetRegistryRequest, GetRegistryResponse, InstallAgreementRequest, InstallAgreementResponse,
    InstallNegativeListRequest, InstallNegativeListResponse, InstallPolicyRequest, InstallPolicyResponse,
    InstallRegistryRequest, InstallRegistryResponse, InstallUserRevocationsRequest, InstallUserRevocationsResponse,
    ListAgreementsRequest, ListAgreementsResponse, ListBudgetsRequest, ListBudgetsResponse, ListOutboxRequest,
    ListOutboxResponse, ListPeersRequest, ListPeersResponse, ListPoliciesRequest, ListPoliciesResponse, NodeStatus,
    OutboxEntry, PingPeerRequest, PingPeerResponse, PolicySummary, RestoreWitness, RevokePolicyRequest,
    RevokePolicyResponse, admin_server::Admin,
};
use tonic::{Request, Response, Status};

use crate::{error::ApiError, node::Node, outbox::kind_name, ping::REFRESH_DEADLINE};

pub(crate) struct AdminService {
    node: Arc<Node>,
    /// One backup at a time: each copies the whole store into a temporary file first, so
    /// concurrent ones (a compromised admin certificate asking in a loop) would fill the disk.
    /// Held until the backup's stream is dropped (read to its end, or abandoned).
    backups: Arc<tokio::sync::Semaphore>,
}

impl AdminService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        Self { node, backups: Arc::new(tokio::sync::Semaphore::new(1)) }
    }
}

/// The stream `Admin.Backup` answers with.
type BackupStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<BackupChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = BackupStream;

    /// The store, cut at the audit log's durable size now (see `backup` and
    /// `ftz_store::backup`). The copy is made first (into an unlinked temporary file, on the
    /// blocking pool), so that the manifest with every tree's checksum can come first; then it is
    /// streamed. The node keeps serving meanwhile.
    async fn backup(&self, _req: Request<BackupRequest>) -> Result<Response<BackupStream>, Status> {
        let slot = self.backups.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(Reason::RateLimited, "a backup is being made already; one at a time").retry_after(10_000)
        })?;
        let (n, core) = (&self.node, &self.node.core);
        let size = n.log.durable_size();
        let root = ftz_audit::merkle::root(&n.log.tree(), size).map_err(ApiError::from)?;
        let checkpoint =
            core.store.checkpoints_before(Some(size.saturating_add(1)), 1).map_err(ApiError::from)?.into_iter().next();
        let manifest = crate::backup::Manifest {
            format: crate::backup::FORMAT.into(),
            zone: core.zone.to_string(),
            store_format_version: ftz_store::FORMAT_VERSION,
            created_at_ms: core.now_ms(),
            node_version: env!("CARGO_PKG_VERSION").into(),
            audit_log_size: size,
            audit_root: hex::encode(root),
            checkpoint_size: checkpoint.as_ref().map_or(0, |(s, _)| *s),
            checkpoint: checkpoint.map(|(_, note)| note),
            trees: Vec::new(),
        };
        let cut = ftz_store::AuditCut { size, leaves_per_tile: crate::audit::tree::TILE_WIDTH };
        let store = core.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BackupChunk, Status>>(4);
        tokio::task::spawn_blocking(move || {
            let prepared = match crate::backup::prepare(&store, cut, manifest) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("backup failed: {e}");
                    let _ = tx.blocking_send(Err(ApiError::internal("the backup could not be made").into()));
                    return;
                }
            };
            let (total, entries) = (prepared.total_bytes(), prepared.entries);
            let mut first = true;
            let sent = prepared.stream(|data| {
                let total_bytes = if std::mem::take(&mut first) { total } else { 0 };
                tx.blocking_send(Ok(BackupChunk { data, total_bytes })).is_ok()
            });
            match sent {
                Ok(sha) => {
                    tracing::info!(bytes = total, entries, audit_log_size = size, sha256 = %hex::encode(sha), "backup sent")
                }
                Err(e) => tracing::warn!("backup not sent whole: {e}"),
            }
        });
        let chunks = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(chunks, move |chunk| {
            let _held = &slot;
            chunk
        }))))
    }

    async fn install_registry(
        &self,
        req: Request<InstallRegistryRequest>,
    ) -> Result<Response<InstallRegistryResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().registry.ok_or_else(|| ApiError::invalid("registry is required"))?;
        let candidate = Registry::parse(env).map_err(ApiError::from)?;
        let report = self.node.federation.install(candidate).await.inspect_err(|e| {
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
        let reg = self.node.core.registry();
        let installed_at_ms = self
            .node
            .core
            .store
            .current_registry()
            .map_err(ApiError::from)?
            .map(|s| s.installed_at_ms)
            .unwrap_or_default();
        Ok(Response::new(GetRegistryResponse {
            registry: Some(reg.envelope().clone()),
            version: reg.version(),
            installed_at_ms,
        }))
    }

    async fn get_node_status(&self, _req: Request<GetNodeStatusRequest>) -> Result<Response<NodeStatus>, Status> {
        let (n, s) = (&self.node, &self.node.core);
        let reg = s.registry();
        Ok(Response::new(NodeStatus {
            zone_id: s.zone.to_string(),
            federation_id: reg.federation_id().to_string(),
            registry_version: reg.version(),
            node_key_id: s.node_key.key_id().to_string(),
            listen_address: n.listen_addr.to_string(),
            started_at_ms: n.started_at_ms,
            now_ms: s.now_ms(),
            peer_zones: reg.zones().filter(|z| z.id != s.zone).map(|z| z.id.to_string()).collect(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            audit_log_size: n.log.durable_size(),
            checkpoint_size: s.store.latest_checkpoint().map_err(ApiError::from)?.map_or(0, |(size, _)| size),
            equivocations_found: n.witness.equivocations_found(),
            outbox_items: s.store.outbox_len() as u64,
            audit_log_blocked: n.log.gate.blocked().unwrap_or_default(),
            restore_witnesses: n
                .log
                .gate
                .witnesses()
                .into_iter()
                .map(|w| RestoreWitness {
                    zone_id: w.zone,
                    answered: w.answered,
                    held_size: w.held_size,
                    conflict: w.conflict,
                })
                .collect(),
        }))
    }

    async fn ping_peer(&self, req: Request<PingPeerRequest>) -> Result<Response<PingPeerResponse>, Status> {
        let zone = ZoneId::new(req.into_inner().zone_id).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(Response::new(self.node.pings.ping(&zone).await?))
    }

    async fn install_agreement(
        &self,
        req: Request<InstallAgreementRequest>,
    ) -> Result<Response<InstallAgreementResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().agreement.ok_or_else(|| ApiError::invalid("agreement is required"))?;
        let candidate = Agreement::parse(env).map_err(ApiError::from)?;
        let (a, already) = self.node.agreements.install(candidate).await.inspect_err(|e| {
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
            .node
            .agreements
            .all()
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

    async fn install_policy(
        &self,
        req: Request<InstallPolicyRequest>,
    ) -> Result<Response<InstallPolicyResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().policy.ok_or_else(|| ApiError::invalid("policy is required"))?;
        let (policy_id, version, already_installed) = self.node.policies.install(env).await.inspect_err(|e| {
            tracing::warn!(reason = %e.reason, "policy refused: {}", e.message);
        })?;
        Ok(Response::new(InstallPolicyResponse { policy_id, version, already_installed }))
    }

    async fn revoke_policy(&self, req: Request<RevokePolicyRequest>) -> Result<Response<RevokePolicyResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().revocation.ok_or_else(|| ApiError::invalid("revocation is required"))?;
        let o = self.node.policies.revoke(env).await?;
        Ok(Response::new(RevokePolicyResponse {
            already_revoked: o.already_revoked,
            notified_zones: o.notified,
            pending_zones: o.pending,
        }))
    }

    async fn list_policies(
        &self,
        _req: Request<ListPoliciesRequest>,
    ) -> Result<Response<ListPoliciesResponse>, Status> {
        let set = self.node.policies.current();
        let policies = set
            .all()
            .map(|p| PolicySummary {
                policy_id: p.id().to_string(),
                version: p.version(),
                provider_zone: p.provider.to_string(),
                consumer_zones: p.doc.consumer_zones.clone(),
                data_class: ftz_policy::exchange::class_name(p.class).to_string(),
                purposes: p.doc.purposes.clone(),
                valid_from_ms: p.doc.valid_from_ms,
                valid_until_ms: p.doc.valid_until_ms,
                revoked: set.is_revoked(p),
                clauses: p.clauses(),
                policy: Some(p.envelope.clone()),
            })
            .collect();
        Ok(Response::new(ListPoliciesResponse { policies }))
    }

    async fn install_negative_list(
        &self,
        req: Request<InstallNegativeListRequest>,
    ) -> Result<Response<InstallNegativeListResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().negative_list.ok_or_else(|| ApiError::invalid("negative_list is required"))?;
        let (version, already_installed) = self.node.policies.install_negative_list(env).await?;
        Ok(Response::new(InstallNegativeListResponse { version, already_installed }))
    }

    async fn install_user_revocations(
        &self,
        req: Request<InstallUserRevocationsRequest>,
    ) -> Result<Response<InstallUserRevocationsResponse>, Status> {
        // Installed but not logged would be a change the audit log does not show.
        self.node.log.writable()?;
        let env = req.into_inner().revocations.ok_or_else(|| ApiError::invalid("revocations is required"))?;
        let (version, already_installed, n) = self.node.users.install(env).await?;
        Ok(Response::new(InstallUserRevocationsResponse {
            version,
            already_installed,
            certificates: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn explain_policy(
        &self,
        req: Request<ExplainPolicyRequest>,
    ) -> Result<Response<ExplainPolicyResponse>, Status> {
        let r = req.into_inner();
        let zone = |f: &str, z: &str| ZoneId::new(z).map_err(|e| ApiError::invalid(format!("{f}: {e}")));
        let (provider, consumer) = (zone("provider_zone", &r.provider_zone)?, zone("consumer_zone", &r.consumer_zone)?);
        let class = ftz_policy::exchange::parse_class(&r.data_class)
            .ok_or_else(|| ApiError::invalid("data_class must be certification, inspection_result or industry_data"))?;
        let fields: Vec<&str> = if r.field.is_empty() { Vec::new() } else { vec![r.field.as_str()] };
        let transfer = ftz_policy::exchange::TransferRequest {
            provider: &provider,
            consumer: &consumer,
            class,
            subject: ftz_policy::exchange::Subject::default(),
            purpose: &r.purpose,
            fields: &fields,
            onward_to: None,
            now: self.node.core.now_ms(),
        };
        let mut resp = ExplainPolicyResponse::default();
        match self.node.policies.explain(&transfer) {
            ftz_policy::exchange::Decision::Allow { policy, steps } => {
                resp.allowed = true;
                resp.policy_id = policy.id().to_string();
                resp.policy_version = policy.version();
                resp.steps = steps;
                if let Some(t) = fields.first().and_then(|f| policy.field(f)) {
                    resp.steps.push(format!("field {}: {t}", r.field));
                }
                resp.steps.extend(policy.clauses());
            }
            ftz_policy::exchange::Decision::Deny { reason, policy, steps, .. } => {
                resp.reason = reason.to_string();
                if let Some((id, v)) = policy {
                    resp.policy_id = id;
                    resp.policy_version = v;
                }
                resp.steps = steps;
            }
        }
        Ok(Response::new(resp))
    }

    async fn list_outbox(&self, req: Request<ListOutboxRequest>) -> Result<Response<ListOutboxResponse>, Status> {
        let limit = match req.into_inner().limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let store = &self.node.core.store;
        let entries = store
            .outbox_items(limit)
            .map_err(ApiError::from)?
            .into_iter()
            .map(|i| OutboxEntry {
                id: hex::encode(i.id),
                kind: kind_name(i.kind).to_string(),
                to_zone: i.to_zone,
                created_at_ms: i.created_at_ms,
                attempts: i.attempts,
                next_attempt_ms: i.next_attempt_ms,
                last_error: i.last_error,
            })
            .collect();
        Ok(Response::new(ListOutboxResponse { entries, total: store.outbox_len() as u64 }))
    }

    async fn list_budgets(&self, req: Request<ListBudgetsRequest>) -> Result<Response<ListBudgetsResponse>, Status> {
        let limit = match req.into_inner().limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let (budgets, truncated) = self.node.policies.budgets(limit)?;
        Ok(Response::new(ListBudgetsResponse { budgets, truncated }))
    }

    async fn list_peers(&self, req: Request<ListPeersRequest>) -> Result<Response<ListPeersResponse>, Status> {
        let refreshed = req.into_inner().refresh;
        if refreshed {
            self.node.pings.ping_all(REFRESH_DEADLINE).await;
        }
        Ok(Response::new(ListPeersResponse { peers: self.node.pings.health(), refreshed }))
    }
}
