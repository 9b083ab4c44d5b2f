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

use crate::{
    core::Core,
    error::ApiError,
    records::check_purpose,
    transfer::{Pull, Sealed, Transfers},
};

/// The zone's industry dataset and its exchange: the secret that keys the pseudonyms of its
/// rows (per consumer zone; it never leaves the node), and the transfers it answers and asks.
pub(crate) struct Industry {
    core: Arc<Core>,
    transfers: Arc<Transfers>,
    pseudonym_secret: [u8; 32],
}

pub(crate) const MAX_ROWS_PER_IMPORT: usize = 10_000;
pub(crate) const MAX_ROWS_PER_EXPORT: u32 = 10_000;

/// Adds rows to the dataset: every row is checked first, and one bad row refuses the call
/// (naming its source line) with nothing stored.
impl Industry {
    pub(crate) fn new(core: Arc<Core>, transfers: Arc<Transfers>, pseudonym_secret: [u8; 32]) -> Self {
        Self { core, transfers, pseudonym_secret }
    }

    pub(crate) async fn import(&self, rows_in: Vec<IndustryRow>) -> Result<(u32, u64), ApiError> {
        let state = &*self.core;
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

    fn all_rows(&self) -> Result<Vec<IndustryRow>, ApiError> {
        let state = &*self.core;
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
    pub(crate) async fn answer_query(&self, consumer: &ZoneId, q: AggregateQuery) -> Result<SealedPayload, ApiError> {
        let state = &*self.core;
        check_purpose(&q.purpose)?;
        Self::check_filters(&q.filters)?;
        let function = AggregateFunction::try_from(q.function).unwrap_or(AggregateFunction::Unspecified);
        let asked: Vec<&str> =
            q.group_by.iter().chain(q.filters.iter().map(|f| &f.field)).map(String::as_str).collect();
        if let Some(neg) = self.transfers.policies().current().negative_list(&state.zone)
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
        let permit =
            self.transfers.permit(&req, "/ftz.v1.Peer/QueryAggregate", "aggregate".into(), epsilon_cost_milli)?;
        let policy = permit.policy.clone();
        check_query(&policy, function, &q.metric, &q.group_by, &q.filters).map_err(|(r, m)| ApiError::new(r, m))?;

        let cost = epsilon_cost_milli(&policy);
        let agg = policy.aggregation();
        let mut remaining = 0.0;
        if cost > 0 {
            let budget = (agg.epsilon_budget * 1000.0).round() as u64;
            let (slice, span) = crate::policies::budget_window(&policy, now);
            let charged = state
                .store
                .write_durably(|s| s.charge_budget(policy.id(), consumer.as_str(), slice, span, cost, budget))
                .await?;
            match charged {
                Ok(spent) => remaining = (budget - spent) as f64 / 1000.0,
                Err(spent) => {
                    return Err(ApiError::new(
                        Reason::BudgetExhausted,
                        format!(
                            "epsilon {:.3} of {:.3} spent in the last {} days; this query needs {:.3}",
                            spent as f64 / 1000.0,
                            agg.epsilon_budget,
                            agg.budget_period_ms as f64 / 86_400_000.0,
                            cost as f64 / 1000.0
                        ),
                    ));
                }
            }
        }
        let data = self.all_rows()?;
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
        tracing::debug!(consumer = %consumer, policy = policy.id(), groups = answer.groups.len(), suppressed = answer.suppressed, epsilon = cost as f64 / 1000.0, "aggregate answered");
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
        let seal = self.transfers.seal(&permit, &payload, None).await?;
        Ok(SealedPayload { payload, seal: Some(seal) })
    }

    /// Provider side: minimised rows, where the policy allows row-level export. Filters may only
    /// name fields the policy keeps as they are.
    pub(crate) async fn export_rows(&self, consumer: &ZoneId, r: ExportRowsRequest) -> Result<SealedPayload, ApiError> {
        let state = &*self.core;
        check_purpose(&r.purpose)?;
        Self::check_filters(&r.filters)?;
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
        let permit = self.transfers.permit(&req, "/ftz.v1.Peer/ExportRows", "rows".into(), |_| 0)?;
        let policy = permit.policy.clone();
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
        let key = pair_key(&self.pseudonym_secret, state.zone.as_str(), consumer.as_str());
        let set = self.transfers.policies().current();
        let negative = set.negative_list(&state.zone);
        let mut dropped = BTreeSet::new();
        let mut out = Vec::new();
        for row in self.all_rows()?.iter().filter(|row| row_selected(row, &r.filters, &policy)).take(limit) {
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
        let seal = self.transfers.seal(&permit, &payload, None).await?;
        Ok(SealedPayload { payload, seal: Some(seal) })
    }

    /// Consumer side: the answer came under a policy this node holds and allows it here; keep a
    /// copy until the retention deadline.
    fn accept_received(
        &self,
        provider: &ZoneId,
        purpose: &str,
        policy_id: &str,
        retain_until: i64,
        what: &str,
        bytes: &[u8],
    ) -> Result<i64, ApiError> {
        let state = &*self.core;
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
        let policy = self.transfers.policies().consumer_accepts(policy_id, &req)?;
        let until =
            now.saturating_add(policy.doc.retention_ms).min(if retain_until > 0 { retain_until } else { i64::MAX });
        // Unique in the store, whichever replica takes it.
        let id = format!("{provider}/{what}/{now}/{}", state.store.next_id()?);
        state.store.put_received(until, &id, bytes)?;
        Ok(until)
    }

    /// Consumer side: pulls `what` ("aggregate" or "rows", as the provider names it in its
    /// refusals) from `provider`; the answer is kept as the policy allows.
    async fn ask<T: Answer>(
        &self,
        provider: &ZoneId,
        method: &'static str,
        what: &str,
        purpose: &str,
        answer: Result<SealedPayload, tonic::Status>,
    ) -> Result<T, ApiError> {
        let pull = Pull {
            provider,
            method,
            class: Some(DataClass::IndustryData),
            subject: what.to_string(),
            purpose,
            not_found_is_an_answer: false,
        };
        let answer = answer.map(|s| Sealed { policy_id: None, payload: s.payload, seal: s.seal });
        self.transfers
            .pull(pull, answer, |sealed, intent| {
                let mut a = T::decode(sealed.payload.as_slice())
                    .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("{what} of zone {provider}: {e}")))?;
                if a.policy_id() != intent.policy_id {
                    return Err(ApiError::new(
                        Reason::TransferInvalid,
                        "the answer names another policy than its intent",
                    ));
                }
                let until = self.accept_received(
                    provider,
                    purpose,
                    &intent.policy_id,
                    a.retain_until(),
                    what,
                    &sealed.payload,
                )?;
                a.set_retain_until(until);
                Ok(a)
            })
            .await
    }

    /// Consumer side: ask `provider` for an aggregate on behalf of this zone's user.
    pub(crate) async fn query(&self, provider: &ZoneId, q: AggregateQuery) -> Result<AggregateAnswer, ApiError> {
        check_purpose(&q.purpose)?;
        let purpose = q.purpose.clone();
        let mut client = self.transfers.peers().client(provider)?;
        let answer = client.query_aggregate(q).await.map(tonic::Response::into_inner);
        self.ask(provider, "/ftz.v1.Peer/QueryAggregate", "aggregate", &purpose, answer).await
    }

    /// Consumer side: ask `provider` for minimised rows.
    pub(crate) async fn fetch_rows(
        &self,
        provider: &ZoneId,
        r: ExportRowsRequest,
    ) -> Result<ExportRowsAnswer, ApiError> {
        check_purpose(&r.purpose)?;
        let purpose = r.purpose.clone();
        let mut client = self.transfers.peers().client(provider)?;
        let answer = client.export_rows(r).await.map(tonic::Response::into_inner);
        self.ask(provider, "/ftz.v1.Peer/ExportRows", "rows", &purpose, answer).await
    }
}

/// What a consumer reads of an answer: the policy it came under and how long it may be kept.
trait Answer: Message + Default {
    fn policy_id(&self) -> &str;
    fn retain_until(&self) -> i64;
    fn set_retain_until(&mut self, ms: i64);
}

macro_rules! answer {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn policy_id(&self) -> &str {
                &self.policy_id
            }
            fn retain_until(&self) -> i64 {
                self.retain_until_ms
            }
            fn set_retain_until(&mut self, ms: i64) {
                self.retain_until_ms = ms;
            }
        }
    )*};
}

answer!(AggregateAnswer, ExportRowsAnswer);

/// `[A-Za-z0-9._:-]` ids for what is received.
pub(crate) fn check_provider(z: &str) -> Result<ZoneId, ApiError> {
    check_id("provider_zone", z)?;
    ZoneId::new(z).map_err(|e| ApiError::invalid(e.to_string()))
}
