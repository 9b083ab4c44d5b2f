//! Exchange policies on this node: installing and revoking them, the export negative list, and
//! the gate every transfer passes (as provider before data leaves, as consumer before received
//! data is kept).

use std::{collections::VecDeque, sync::Arc};

use ftz_core::{Reason, ZoneId, envelope::PayloadType};
use ftz_policy::exchange::{
    CompiledPolicy, Decision, InstallOutcome, PolicySet, TransferRequest, Usage, check_negative_list,
    check_policy_install, check_revocation, decode_negative_list,
};
use ftz_proto::{BudgetSummary, Envelope, NotifyPolicyRevocationRequest, PolicyRevocation};
use ftz_store::Store;
use prost::Message;

use crate::{
    audit::{AuditLog, events::log_config},
    core::Core,
    error::ApiError,
    outbox::{Courier, Handover, Kind, Outbox, Outgoing, Sent, carry_call, decode_body},
    peers::PeerClients,
};

/// Installed policies the node cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] ftz_store::StoreError),
    #[error("installed {0}")]
    Unreadable(String),
}

/// The exchange policies on this node: the compiled set in force (swapped whole on every
/// install), the lock that serialises installs, and the rate windows of the provider gate.
pub(crate) struct Policies {
    core: Arc<Core>,
    log: AuditLog,
    outbox: Arc<Outbox>,
    set: std::sync::RwLock<Arc<PolicySet>>,
    /// Serialises policy, revocation and negative list installs.
    lock: tokio::sync::Mutex<()>,
    /// Request windows for the policies' rate limits.
    rate: RateWindows,
}

/// The installed policies, revocations and negative list, as stored.
pub(crate) fn load(store: &Store, own: &ZoneId) -> Result<PolicySet, LoadError> {
    let bad = LoadError::Unreadable;
    let mut set = PolicySet::default();
    for (id, bytes) in store.policies()? {
        let env = Envelope::decode(bytes.as_slice()).map_err(|e| bad(format!("policy {id}: {e}")))?;
        set.insert(CompiledPolicy::compile(env).map_err(|e| bad(format!("policy {id}: {e}")))?);
    }
    for (id, version, _) in store.policy_revocations()? {
        set.revoke(&id, version);
    }
    if let Some(bytes) = store.negative_list()? {
        let env = Envelope::decode(bytes.as_slice()).map_err(|e| bad(format!("negative list: {e}")))?;
        set.set_negative_list(own.clone(), decode_negative_list(&env).map_err(|e| bad(format!("negative list: {e}")))?);
    }
    Ok(set)
}

pub(crate) struct RevokeOutcome {
    pub already_revoked: bool,
    pub notified: Vec<String>,
    pub pending: Vec<String>,
}

/// The sliding window of request times per (policy, consumer), for rate limits.
#[derive(Default)]
pub(crate) struct RateWindows(std::sync::Mutex<std::collections::HashMap<(String, String), VecDeque<i64>>>);

/// How many slices a budget period is cut into.
const BUDGET_SLICES: u64 = 30;

/// The budget window at a time: the current slice and how many slices count with it. A privacy
/// budget holds in every stretch of the period's length, not per calendar period (which would
/// let a consumer spend a period's budget just before its end and again just after): slices of
/// a thirtieth of the period (rounded up), the current one and the 30 before it counting, so the
/// slices counted always cover at least the period before now.
pub(crate) fn budget_window(p: &CompiledPolicy, now: i64) -> (u64, u64) {
    (u64::try_from(now).unwrap_or(0) / budget_slice_ms(p), BUDGET_SLICES + 1)
}

/// The length of one slice of a policy's budget window.
fn budget_slice_ms(p: &CompiledPolicy) -> u64 {
    let period = u64::try_from(p.aggregation().budget_period_ms).unwrap_or(1).max(1);
    period.div_ceil(BUDGET_SLICES)
}

/// A (policy, consumer) budget as the provider gate counts it now: what the charges in the
/// window add up to, and when the oldest of them leaves it.
fn budget_summary(
    set: &PolicySet,
    policy_id: String,
    consumer_zone: String,
    slices: &[(u64, u64)],
    now: i64,
) -> BudgetSummary {
    let mut b = BudgetSummary { policy_id, consumer_zone, ..Default::default() };
    let Some(p) = set.get(&b.policy_id) else { return b };
    let agg = p.aggregation();
    let (current, span) = budget_window(p, now);
    let len = budget_slice_ms(p);
    let in_window: Vec<(u64, u64)> =
        slices.iter().copied().filter(|(s, v)| *v > 0 && *s <= current && current - s < span).collect();
    b.policy_version = p.version();
    b.spent_milli = in_window.iter().fold(0u64, |a, (_, v)| a.saturating_add(*v));
    b.budget_milli = (agg.epsilon_budget * 1000.0).round() as u64;
    b.window_ms = agg.budget_period_ms;
    b.slice_ms = i64::try_from(len).unwrap_or(i64::MAX);
    // A charge in slice s counts until slice s + span begins.
    b.oldest_charge_leaves_at_ms = in_window
        .iter()
        .map(|(s, _)| s.saturating_add(span).saturating_mul(len))
        .min()
        .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
    b.policy_revoked = set.is_revoked(p);
    b
}

impl Policies {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, outbox: Arc<Outbox>, installed: PolicySet) -> Self {
        Self {
            core,
            log,
            outbox,
            set: std::sync::RwLock::new(Arc::new(installed)),
            lock: tokio::sync::Mutex::new(()),
            rate: RateWindows::default(),
        }
    }

    /// A snapshot of the installed policies, revocations and negative list.
    pub(crate) fn current(&self) -> Arc<PolicySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, p: PolicySet) {
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    /// Loads the installed policies, revocations and negative list again (another replica of
    /// this node installed one).
    pub(crate) async fn reload(&self) -> Result<(), LoadError> {
        let _guard = self.lock.lock().await;
        let loaded = load(&self.core.store, &self.core.zone)?;
        self.replace(loaded);
        Ok(())
    }

    /// Installs a signed policy if the rules allow it; durable before it takes effect.
    pub(crate) async fn install(&self, env: Envelope) -> Result<(String, u64, bool), ApiError> {
        let state = &*self.core;
        let candidate = CompiledPolicy::compile(env)?;
        let _guard = self.lock.lock().await;
        let set = self.current();
        let installed = set.get(candidate.id());
        let outcome = check_policy_install(
            &candidate,
            &state.registry(),
            &state.zone,
            installed.map(|p| p.as_ref()),
            set.revoked_up_to(candidate.id()),
            state.now_ms(),
        )?;
        let (id, version) = (candidate.id().to_string(), candidate.version());
        if outcome == InstallOutcome::AlreadyInstalled {
            return Ok((id, version, true));
        }
        let bytes = candidate.envelope.encode_to_vec();
        let expected = installed.map(|p| p.envelope.encode_to_vec());
        state.store.write_durably(|s| s.put_policy(&id, &bytes, expected.as_deref())).await?;
        tracing::info!(policy = %id, version, provider = %candidate.provider, class = ?candidate.class, "exchange policy installed");
        let digest = candidate.digest;
        let mut next = (*set).clone();
        next.insert(candidate);
        self.replace(next);
        log_config(state, &self.log, "policy", &id, version, digest).await;
        Ok((id, version, false))
    }

    /// Applies a signed revocation here (at once, durably). Returns false if it was already applied.
    async fn apply_revocation(
        &self,
        env: &Envelope,
    ) -> Result<(Arc<CompiledPolicy>, PolicyRevocation, bool), ApiError> {
        let state = &*self.core;
        let rev: PolicyRevocation = ftz_core::envelope::decode_payload(env, PayloadType::POLICY_REVOCATION)?;
        let _guard = self.lock.lock().await;
        let set = self.current();
        let policy = set.get(&rev.policy_id).cloned().ok_or_else(|| {
            ApiError::new(Reason::NoPolicy, format!("no policy {:?} is installed here", rev.policy_id))
        })?;
        let rev = check_revocation(env, &policy, &state.registry(), state.now_ms())?;
        let bytes = env.encode_to_vec();
        let fresh = state.store.write_durably(|s| s.put_policy_revocation(&rev.policy_id, rev.version, &bytes)).await?;
        if fresh {
            let mut next = (*set).clone();
            next.revoke(&rev.policy_id, rev.version);
            self.replace(next);
            tracing::info!(policy = %rev.policy_id, up_to = rev.version, by = %rev.revoked_by_zone, "exchange policy revoked");
            log_config(
                state,
                &self.log,
                "policy_revocation",
                &rev.policy_id,
                rev.version,
                ftz_core::sha256(&env.payload),
            )
            .await;
        }
        Ok((policy, rev, fresh))
    }

    /// Admin side: applies the revocation here, then forwards it to every other zone the policy
    /// names, retrying in the background those that cannot be reached.
    pub(crate) async fn revoke(&self, env: Envelope) -> Result<RevokeOutcome, ApiError> {
        let state = &*self.core;
        let (policy, _rev, fresh) = self.apply_revocation(&env).await?;
        let mut zones: Vec<ZoneId> =
            std::iter::once(policy.provider.clone()).chain(policy.consumers.iter().cloned()).collect();
        zones.extend(policy.doc.onward_zones.iter().filter_map(|z| ZoneId::new(z.as_str()).ok()));
        zones.retain(|z| *z != state.zone);
        let (mut notified, mut pending) = (Vec::new(), Vec::new());
        let body = NotifyPolicyRevocationRequest { revocation: Some(env.clone()) }.encode_to_vec();
        for z in zones {
            let id = Outgoing::derived_id(Kind::PolicyRevocation, &z, &body);
            let msg = Outgoing { id, kind: Kind::PolicyRevocation, to: z.clone(), body: body.clone() };
            match self.outbox.send(msg).await {
                Ok(Sent::Delivered { .. }) => notified.push(z.to_string()),
                Ok(Sent::Queued { error }) => {
                    tracing::warn!(zone = %z, "policy revocation queued: {error}");
                    pending.push(z.to_string());
                }
                Err(e) => {
                    tracing::warn!(zone = %z, "policy revocation refused: {e}");
                    pending.push(z.to_string());
                }
            }
        }
        Ok(RevokeOutcome { already_revoked: !fresh, notified, pending })
    }

    /// Peer side: another party forwards a revocation; the signature decides, the caller must be a
    /// zone the policy names.
    pub(crate) async fn accept_revocation(&self, from: &ZoneId, env: Envelope) -> Result<(), ApiError> {
        let rev: PolicyRevocation = ftz_core::envelope::decode_payload(&env, PayloadType::POLICY_REVOCATION)?;
        let named =
            self.current().get(&rev.policy_id).is_some_and(|p| p.provider == *from || PolicySet::may_hold(p, from));
        if !named {
            return Err(ApiError::new(
                Reason::ZoneMismatch,
                format!("zone {from} is not a party to policy {:?}", rev.policy_id),
            ));
        }
        self.apply_revocation(&env).await.map(|_| ())
    }

    /// Installs this zone's export negative list.
    pub(crate) async fn install_negative_list(&self, env: Envelope) -> Result<(u64, bool), ApiError> {
        let state = &*self.core;
        let _guard = self.lock.lock().await;
        let set = self.current();
        // Decided against what the store holds (another replica of this node may have
        // installed a newer list), and written only over exactly that.
        let stored = state.store.negative_list()?;
        let installed = match &stored {
            Some(b) => {
                let held = Envelope::decode(b.as_slice()).map_err(|e| ApiError::internal(e.to_string()))?;
                decode_negative_list(&held)?.version
            }
            None => 0,
        };
        match check_negative_list(&env, &state.registry(), &state.zone, installed, state.now_ms())? {
            None => Ok((installed, true)),
            Some(list) => {
                let bytes = env.encode_to_vec();
                state.store.write_durably(|s| s.replace_negative_list(stored.as_deref(), &bytes)).await?;
                let version = list.version;
                let mut next = (*set).clone();
                next.set_negative_list(state.zone.clone(), list);
                self.replace(next);
                log_config(
                    state,
                    &self.log,
                    "negative_list",
                    state.zone.as_str(),
                    version,
                    ftz_core::sha256(&env.payload),
                )
                .await;
                tracing::info!(version, "export negative list installed");
                Ok((version, false))
            }
        }
    }

    /// Provider side: may this data leave for `req.consumer`? Applies the rate limit (a request
    /// that is allowed counts against it) and reports the epsilon needed for the budget check.
    pub(crate) fn authorize(
        &self,
        req: &TransferRequest<'_>,
        epsilon_needed_milli: impl Fn(&CompiledPolicy) -> u64,
    ) -> Result<Arc<CompiledPolicy>, ApiError> {
        let state = &*self.core;
        let set = self.current();
        let consumer = req.onward_to.unwrap_or(req.consumer).to_string();
        let mut windows = self.rate.0.lock().unwrap_or_else(|e| e.into_inner());
        let usage = |p: &CompiledPolicy| {
            let (_, per) = p.rate();
            let in_window = windows
                .get(&(p.id().to_string(), consumer.clone()))
                .map(|w| w.iter().filter(|t| **t > req.now - per).count())
                .unwrap_or(0);
            let needed = epsilon_needed_milli(p);
            let spent = if needed > 0 {
                let (slice, span) = budget_window(p, req.now);
                state.store.budget_spent(p.id(), &consumer, slice, span).unwrap_or(u64::MAX)
            } else {
                0
            };
            // Each of the zone's replicas counts the requests it admitted: as a share of the
            // zone's, they count for every replica (the zone admits no more than the rate, plus
            // at most one request per replica).
            let replicas = state.limits.replicas.max(1) as usize;
            Usage {
                requests_in_window: u32::try_from(in_window.saturating_mul(replicas)).unwrap_or(u32::MAX),
                epsilon_spent_milli: spent,
                epsilon_needed_milli: needed,
            }
        };
        match set.evaluate(req, usage) {
            Decision::Allow { policy, .. } => {
                let (_, per) = policy.rate();
                let w = windows.entry((policy.id().to_string(), consumer)).or_default();
                while w.front().is_some_and(|t| *t <= req.now - per) {
                    w.pop_front();
                }
                w.push_back(req.now);
                Ok(policy)
            }
            Decision::Deny { reason, policy, detail, .. } => {
                let mut e = ApiError::new(reason, detail);
                if let Some((id, version)) = &policy {
                    e = e.with_meta("policy_id", id.as_str()).with_meta("policy_version", version.to_string());
                }
                if reason == Reason::RateLimited {
                    let retry = policy
                        .and_then(|(id, _)| set.get(&id).cloned())
                        .and_then(|p| {
                            let (_, per) = p.rate();
                            windows
                                .get(&(p.id().to_string(), req.onward_to.unwrap_or(req.consumer).to_string()))
                                .and_then(|w| w.front().map(|t| t + per - req.now))
                        })
                        .unwrap_or(1000);
                    e = e.retry_after(retry);
                }
                // Audited on both sides; a line per refusal is what a peer could make us write.
                tracing::debug!(reason = %e.reason, consumer = %req.consumer, "transfer refused by policy: {}", e.message);
                Err(e)
            }
        }
    }

    /// Consumer side: this node keeps data received under `policy_id` only if it holds that policy
    /// (the terms it promised) and the policy allows this transfer to it. Returns the policy.
    pub(crate) fn consumer_accepts(
        &self,
        policy_id: &str,
        req: &TransferRequest<'_>,
    ) -> Result<Arc<CompiledPolicy>, ApiError> {
        let set = self.current();
        let Some(policy) = set.get(policy_id).cloned() else {
            return Err(ApiError::new(
                Reason::NoPolicy,
                format!("data arrived under policy {policy_id:?}, which this node does not hold: nothing kept"),
            ));
        };
        match set.evaluate(req, |_| Usage::default()) {
            Decision::Allow { policy: p, .. } if p.id() == policy.id() => Ok(policy),
            Decision::Allow { policy: p, .. } => Err(ApiError::new(
                Reason::NoPolicy,
                format!("data arrived under policy {policy_id:?}, but policy {} is the one that applies here", p.id()),
            )),
            Decision::Deny { reason, detail, .. } => {
                Err(ApiError::new(reason, format!("refusing data received under {policy_id}: {detail}")))
            }
        }
    }

    /// The privacy budgets charged on this node as provider, per (policy, consumer), counted in
    /// each policy's window ending now: at most `limit`, and whether there are more.
    pub(crate) fn budgets(&self, limit: usize) -> Result<(Vec<BudgetSummary>, bool), ApiError> {
        let now = self.core.now_ms();
        let set = self.current();
        let mut stored = self.core.store.budgets(limit.saturating_add(1))?;
        let truncated = stored.len() > limit;
        stored.truncate(limit);
        let list =
            stored.into_iter().map(|(policy, consumer, slices)| budget_summary(&set, policy, consumer, &slices, now));
        Ok((list.collect(), truncated))
    }

    /// What the rules decide for a transfer, step by step, without counting it.
    pub(crate) fn explain(&self, req: &TransferRequest<'_>) -> Decision {
        self.current().evaluate(req, |_| Usage::default())
    }
}

/// Carries policy revocations to the other parties (`Peer.NotifyPolicyRevocation`).
pub(crate) struct RevocationCourier(pub Arc<PeerClients>);

#[tonic::async_trait]
impl Courier for RevocationCourier {
    async fn carry(&self, item: &ftz_store::OutboxItem) -> Handover {
        match decode_body::<NotifyPolicyRevocationRequest>(item) {
            Ok(msg) => {
                carry_call(&self.0, item, msg, |mut c, r| async move { c.notify_policy_revocation(r).await }).await
            }
            Err(h) => h,
        }
    }
}

#[cfg(test)]
mod tests {
    use ftz_core::{Reason, envelope::PayloadType};
    use ftz_policy::examples::record_policy;
    use ftz_proto::DataClass;

    use crate::testkit::Kit;

    #[tokio::test]
    async fn a_policy_needs_every_party_and_its_versions_chain() {
        let kit = Kit::new().await;
        let doc = record_policy("p-1", "shanghai", "hainan", DataClass::Certification, &["verification"], kit.now());
        let under = kit.signed(PayloadType::EXCHANGE_POLICY, &doc, &["shanghai"]);
        assert_eq!(kit.policies.install(under).await.err().unwrap().reason, Reason::PolicyUnderSigned);
        assert!(kit.core.store.policies().unwrap().is_empty());
        assert!(kit.policies.current().get("p-1").is_none());

        let v1 = kit.signed(PayloadType::EXCHANGE_POLICY, &doc, &["shanghai", "hainan"]);
        assert_eq!(kit.policies.install(v1.clone()).await.unwrap(), ("p-1".into(), 1, false));
        assert_eq!(kit.policies.install(v1.clone()).await.unwrap(), ("p-1".into(), 1, true));

        // Version 2 must name version 1's digest.
        let mut next = ftz_proto::ExchangePolicy { version: 2, previous_digest: vec![7; 32], ..doc.clone() };
        let broken = kit.signed(PayloadType::EXCHANGE_POLICY, &next, &["shanghai", "hainan"]);
        assert_eq!(kit.policies.install(broken).await.err().unwrap().reason, Reason::PolicyChainBroken);
        next.previous_digest = ftz_core::sha256(&v1.payload).to_vec();
        let v2 = kit.signed(PayloadType::EXCHANGE_POLICY, &next, &["shanghai", "hainan"]);
        assert_eq!(kit.policies.install(v2).await.unwrap(), ("p-1".into(), 2, false));
        assert_eq!(kit.policies.current().get("p-1").unwrap().version(), 2);
        // Two installs, two entries in the audit log.
        assert_eq!(kit.log.durable_size(), 2);
    }
}
