//! Industry data: the zone's own dataset, answering other zones' aggregate queries and row
//! exports as their policy allows (provider side), and asking other zones (consumer side).

use std::collections::BTreeSet;

use ftz_core::{Reason, ZoneId, records::check_id};
use ftz_policy::{
    aggregate::{self, check_query, epsilon_cost_milli, minimise, row_selected},
    dp::SystemRandomness,
    exchange::{Subject, TransferRequest},
    rows,
    transform::pair_key,
};
use ftz_proto::{
    AggregateAnswer, AggregateFunction, AggregateQuery, DataClass, ExportRowsAnswer, ExportRowsRequest, IndustryRow,
    RowFilter, SealedPayload,
};
use prost::Message;

use std::sync::Arc;

use ftz_audit::leaf::Refusing;

use crate::{
    audit::transfer::{self, Sending},
    error::ApiError,
    ping::peer_failure,
    recognition::check_purpose,
    state::NodeState,
};

pub const MAX_ROWS_PER_IMPORT: usize = 10_000;
pub const MAX_ROWS_PER_EXPORT: u32 = 10_000;

/// Adds rows to the dataset: every row is checked first, and one bad row refuses the call
/// (naming its source line) with nothing stored.
pub async fn import(state: &NodeState, rows_in: Vec<IndustryRow>) -> Result<(u32, u64), ApiError> {
    if rows_in.len() > MAX_ROWS_PER_IMPORT {
        return Err(ApiError::invalid(format!("at most {MAX_ROWS_PER_IMPORT} rows per call")));
    }
    let mut batch = Vec::with_capacity(rows_in.len());
    for r in &rows_in {
        rows::check_row(r).map_err(|e| ApiError::new(Reason::RowInvalid, format!("line {}: {e}", r.line)))?;
        batch.push((r.enterprise_uscc.clone(), r.period.clone(), r.encode_to_vec()));
    }
    let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let total = state.store.write_durably(|s| s.put_rows(&batch)).await?;
    tracing::info!(rows = n, total, "industry rows imported");
    Ok((n, total))
}

fn all_rows(state: &NodeState) -> Result<Vec<IndustryRow>, ApiError> {
    state
        .store
        .rows()
        .map(|b| {
            let b = b?;
            IndustryRow::decode(b.as_slice())
                .map_err(|e| ApiError::internal(format!("stored row does not decode: {e}")))
        })
        .collect()
}

fn check_filters(filters: &[RowFilter]) -> Result<(), ApiError> {
    if filters.len() > 8 {
        return Err(ApiError::invalid("at most 8 filters"));
    }
    for f in filters {
        if !rows::is_field(&f.field) || f.prefix.len() > 64 {
            return Err(ApiError::invalid(format!("filter on {:?}: not a field of the dataset", f.field)));
        }
    }
    Ok(())
}

/// Provider side: an aggregate for `consumer`. The policy gate (negative list, policy, purpose,
/// rate, budget) comes first, then the epsilon is charged durably, then the data is read.
pub async fn answer_query(state: &NodeState, consumer: &ZoneId, q: AggregateQuery) -> Result<SealedPayload, ApiError> {
    check_purpose(&q.purpose)?;
    check_filters(&q.filters)?;
    let function = AggregateFunction::try_from(q.function).unwrap_or(AggregateFunction::Unspecified);
    let asked: Vec<&str> = q.group_by.iter().chain(q.filters.iter().map(|f| &f.field)).map(String::as_str).collect();
    if let Some(neg) = state.policies().negative_list(&state.zone)
        && neg.fields.contains(&q.metric)
    {
        return Err(ApiError::new(
            Reason::NegativeList,
            format!("{}'s export negative list names the field {}", state.zone, q.metric),
        ));
    }
    let now = state.now_ms();
    let req = TransferRequest {
        provider: &state.zone,
        consumer,
        class: DataClass::IndustryData,
        subject: Subject::default(),
        purpose: &q.purpose,
        fields: &asked,
        onward_to: None,
        now,
    };
    let policy = crate::policies::authorize(state, &req, epsilon_cost_milli)?;
    check_query(&policy, function, &q.metric, &q.group_by, &q.filters).map_err(|(r, m)| ApiError::new(r, m))?;

    let cost = epsilon_cost_milli(&policy);
    let agg = policy.aggregation();
    let mut remaining = 0.0;
    if cost > 0 {
        let budget = (agg.epsilon_budget * 1000.0).round() as u64;
        let period = crate::policies::budget_period(&policy, now);
        let charged = state
            .store
            .write_durably(|s| s.charge_budget(policy.id(), consumer.as_str(), period, cost, budget))
            .await?;
        match charged {
            Ok(spent) => remaining = (budget - spent) as f64 / 1000.0,
            Err(spent) => {
                return Err(ApiError::new(
                    Reason::BudgetExhausted,
                    format!(
                        "epsilon {:.3} of {:.3} spent this period; this query needs {:.3}",
                        spent as f64 / 1000.0,
                        agg.epsilon_budget,
                        cost as f64 / 1000.0
                    ),
                ));
            }
        }
    }
    let data = all_rows(state)?;
    let answer = aggregate::aggregate(
        data.iter(),
        function,
        &q.metric,
        &q.group_by,
        &q.filters,
        &policy,
        &mut SystemRandomness::default(),
    )
    .map_err(|(r, m)| ApiError::new(r, m))?;
    tracing::info!(consumer = %consumer, policy = policy.id(), groups = answer.groups.len(), suppressed = answer.suppressed, epsilon = cost as f64 / 1000.0, "aggregate answered");
    let a = AggregateAnswer {
        groups: answer.groups,
        suppressed_groups: answer.suppressed,
        noised: answer.noised,
        epsilon_charged: cost as f64 / 1000.0,
        epsilon_remaining: remaining,
        policy_id: policy.id().to_string(),
        policy_version: policy.version(),
        provider_zone: state.zone.to_string(),
        retain_until_ms: now.saturating_add(policy.doc.retention_ms),
    };
    let payload = a.encode_to_vec();
    let sending = Sending {
        consumer,
        policy: &policy,
        purpose: &q.purpose,
        subject: "aggregate".into(),
        method: "/ftz.v1.Peer/QueryAggregate",
        holder_of: None,
    };
    let seal = transfer::seal(state, sending, &payload).await?;
    Ok(SealedPayload { payload, seal: Some(seal) })
}

/// Provider side: minimised rows, where the policy allows row-level export. Filters may only
/// name fields the policy keeps as they are.
pub async fn export_rows(
    state: &NodeState,
    consumer: &ZoneId,
    r: ExportRowsRequest,
) -> Result<SealedPayload, ApiError> {
    check_purpose(&r.purpose)?;
    check_filters(&r.filters)?;
    let now = state.now_ms();
    let asked: Vec<&str> = r.filters.iter().map(|f| f.field.as_str()).collect();
    let req = TransferRequest {
        provider: &state.zone,
        consumer,
        class: DataClass::IndustryData,
        subject: Subject::default(),
        purpose: &r.purpose,
        fields: &asked,
        onward_to: None,
        now,
    };
    let policy = crate::policies::authorize(state, &req, |_| 0)?;
    if !policy.aggregation().row_level {
        return Err(ApiError::new(
            Reason::FieldNotAllowed,
            format!("policy {} allows aggregates only, not rows", policy.id()),
        ));
    }
    for f in &r.filters {
        if policy.field(&f.field) != Some(ftz_policy::exchange::FieldTreatment::Keep) {
            return Err(ApiError::new(
                Reason::FieldNotAllowed,
                format!("rows can only be filtered by fields kept as they are; {} is not", f.field),
            ));
        }
    }
    let limit = r.limit.clamp(1, MAX_ROWS_PER_EXPORT) as usize;
    let key = pair_key(&state.pseudonym_secret, state.zone.as_str(), consumer.as_str());
    let set = state.policies();
    let negative = set.negative_list(&state.zone);
    let mut dropped = BTreeSet::new();
    let mut out = Vec::new();
    for row in all_rows(state)?.iter().filter(|row| row_selected(row, &r.filters, &policy)).take(limit) {
        let (m, d) = minimise(row, &policy, negative, &key);
        dropped.extend(d);
        out.push(m);
    }
    tracing::info!(consumer = %consumer, policy = policy.id(), rows = out.len(), "rows exported");
    let answer = ExportRowsAnswer {
        rows: out,
        policy_id: policy.id().to_string(),
        policy_version: policy.version(),
        retain_until_ms: now.saturating_add(policy.doc.retention_ms),
        dropped_fields: dropped.into_iter().collect(),
    };
    let payload = answer.encode_to_vec();
    let sending = Sending {
        consumer,
        policy: &policy,
        purpose: &r.purpose,
        subject: "rows".into(),
        method: "/ftz.v1.Peer/ExportRows",
        holder_of: None,
    };
    let seal = transfer::seal(state, sending, &payload).await?;
    Ok(SealedPayload { payload, seal: Some(seal) })
}

/// Consumer side: the answer came under a policy this node holds and allows it here; keep a
/// copy until the retention deadline.
fn accept_received(
    state: &NodeState,
    provider: &ZoneId,
    purpose: &str,
    policy_id: &str,
    retain_until: i64,
    what: &str,
    bytes: &[u8],
) -> Result<i64, ApiError> {
    let now = state.now_ms();
    let req = TransferRequest {
        provider,
        consumer: &state.zone,
        class: DataClass::IndustryData,
        subject: Subject::default(),
        purpose,
        fields: &[],
        onward_to: None,
        now,
    };
    let policy = crate::policies::consumer_accepts(state, policy_id, &req)?;
    let until = now.saturating_add(policy.doc.retention_ms).min(if retain_until > 0 { retain_until } else { i64::MAX });
    let id = format!("{provider}/{what}/{now}/{}", state.store.received_count());
    state.store.put_received(until, &id, bytes)?;
    Ok(until)
}

/// Consumer side: checks the seal, keeps what the policy allows, signs and sends the receipt.
async fn take_delivery(
    state: &Arc<NodeState>,
    provider: &ZoneId,
    sealed: &SealedPayload,
    policy_id: &str,
    purpose: &str,
    retain_until: i64,
    what: &str,
) -> Result<i64, ApiError> {
    let (intent_env, intent) = transfer::check_seal(state, provider, sealed.seal.as_ref(), &sealed.payload, policy_id)?;
    let kept = accept_received(state, provider, purpose, policy_id, retain_until, what, &sealed.payload);
    transfer::receive_pulled(state, &intent_env, &intent, kept.as_ref().err().map(|e| e.reason)).await?;
    kept
}

async fn ask_failed(state: &NodeState, provider: &ZoneId, method: &str, s: &tonic::Status) -> ApiError {
    let e = peer_failure(provider, s);
    // The subject as the provider logs it (see `services::peer`).
    let subject = if method.ends_with("/ExportRows") { "rows" } else { "aggregate" };
    transfer::log_refusal(
        state,
        provider.as_str(),
        Refusing::RefusedByPeer,
        method,
        &e,
        Some(DataClass::IndustryData),
        subject,
    )
    .await;
    e
}

/// Consumer side: ask `provider` for an aggregate on behalf of this zone's user.
pub async fn query(state: &Arc<NodeState>, provider: &ZoneId, q: AggregateQuery) -> Result<AggregateAnswer, ApiError> {
    check_purpose(&q.purpose)?;
    let purpose = q.purpose.clone();
    let mut client = state.peers.client(state, provider)?;
    let sealed = match client.query_aggregate(q).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(ask_failed(state, provider, "/ftz.v1.Peer/QueryAggregate", &s).await),
    };
    let mut a = AggregateAnswer::decode(sealed.payload.as_slice())
        .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("answer of zone {provider}: {e}")))?;
    a.retain_until_ms =
        take_delivery(state, provider, &sealed, &a.policy_id.clone(), &purpose, a.retain_until_ms, "aggregate").await?;
    Ok(a)
}

/// Consumer side: ask `provider` for minimised rows.
pub async fn fetch_rows(
    state: &Arc<NodeState>,
    provider: &ZoneId,
    r: ExportRowsRequest,
) -> Result<ExportRowsAnswer, ApiError> {
    check_purpose(&r.purpose)?;
    let purpose = r.purpose.clone();
    let mut client = state.peers.client(state, provider)?;
    let sealed = match client.export_rows(r).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(ask_failed(state, provider, "/ftz.v1.Peer/ExportRows", &s).await),
    };
    let mut a = ExportRowsAnswer::decode(sealed.payload.as_slice())
        .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("rows of zone {provider}: {e}")))?;
    a.retain_until_ms =
        take_delivery(state, provider, &sealed, &a.policy_id.clone(), &purpose, a.retain_until_ms, "rows").await?;
    Ok(a)
}

/// `[A-Za-z0-9._:-]` ids for what is received.
pub fn check_provider(z: &str) -> Result<ZoneId, ApiError> {
    check_id("provider_zone", z)?;
    ZoneId::new(z).map_err(|e| ApiError::invalid(e.to_string()))
}
