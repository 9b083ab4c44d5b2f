//! Answering over industry data as a policy allows: aggregates with small groups suppressed
//! and, where the policy says so, discrete Laplace noise; rows minimised field by field.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ftz_core::Reason;
use ftz_proto::{AggregateFunction, AggregateGroup, IndustryRow, MinimisedRow, RowFilter};

use crate::{
    dp::{PartitionSelection, Randomness, noise},
    exchange::{CompiledPolicy, FieldTreatment, NegativeList},
    rows,
    transform::pseudonymise,
};

/// A refusal of a query: a reason and what to tell the asker.
pub type Refusal = (Reason, String);

/// The milli-epsilon a query costs under `policy` (0 without differential privacy): at least 2,
/// since half goes to partition selection and half to the values, each at least 1.
pub fn epsilon_cost_milli(policy: &CompiledPolicy) -> u64 {
    let a = policy.aggregation();
    if a.differential_privacy { (a.epsilon_per_query * 1000.0).round().max(2.0) as u64 } else { 0 }
}

/// The checks a query must pass before any data is read (and before any budget is charged).
pub fn check_query(
    policy: &CompiledPolicy,
    function: AggregateFunction,
    metric: &str,
    group_by: &[String],
    filters: &[RowFilter],
) -> Result<(), Refusal> {
    if policy.doc.aggregation.is_none() {
        return Err((Reason::FieldNotAllowed, "the policy allows no aggregate queries".into()));
    }
    let needs_metric = matches!(function, AggregateFunction::Sum | AggregateFunction::Mean);
    if function == AggregateFunction::Unspecified {
        return Err((Reason::InvalidArgument, "function must be COUNT, SUM or MEAN".into()));
    }
    if needs_metric {
        if !rows::is_metric(metric) {
            return Err((
                Reason::InvalidArgument,
                format!("metric {metric:?} is not one of {}", rows::METRICS.join(", ")),
            ));
        }
        if policy.aggregation().differential_privacy && policy.sum_bound(metric).is_none() {
            return Err((Reason::FieldNotAllowed, format!("the policy sets no sum bound for {metric}")));
        }
    }
    if needs_metric && !matches!(policy.field(metric), Some(FieldTreatment::Keep | FieldTreatment::Generalise(_))) {
        return Err((
            Reason::FieldNotAllowed,
            format!("the policy does not let {metric} leave (it needs a keep or generalise rule to be aggregated)"),
        ));
    }
    if group_by.len() > 3 {
        return Err((Reason::InvalidArgument, "group by at most 3 fields".into()));
    }
    if !policy.aggregation().differential_privacy {
        // Exact answers over different partitions can be differenced (a group minus the visible
        // parts of it is the suppressed rest): without noise, only the one partition the policy
        // names is answered, unfiltered.
        let asked: std::collections::BTreeSet<&str> = group_by.iter().map(String::as_str).collect();
        let named: std::collections::BTreeSet<&str> = policy
            .doc
            .aggregation
            .as_ref()
            .map(|a| a.group_by.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if !filters.is_empty() || asked != named || asked.len() != group_by.len() {
            return Err((
                Reason::FieldNotAllowed,
                format!(
                    "without differential privacy the policy answers exactly one partition: group by {} and no filters",
                    named.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for g in group_by.iter().chain(filters.iter().map(|f| &f.field)) {
        if !policy.may_group_by(g) {
            return Err((Reason::FieldNotAllowed, format!("the policy does not allow grouping or filtering by {g}")));
        }
    }
    Ok(())
}

fn passes(row: &IndustryRow, filters: &[RowFilter], policy: &CompiledPolicy) -> bool {
    let admitted =
        policy.admits(&crate::exchange::Subject { industry_code: Some(&row.industry_code), ..Default::default() });
    // A filter sees a field as the policy lets it leave (a period generalised to a year cannot be
    // filtered by month).
    admitted && filters.iter().all(|f| group_value(row, &f.field, policy).starts_with(f.prefix.as_str()))
}

fn group_value(row: &IndustryRow, field: &str, policy: &CompiledPolicy) -> String {
    let v = rows::field(row, field).unwrap_or_default();
    match policy.field(field) {
        Some(FieldTreatment::Generalise(g)) => g.apply(&v),
        _ => v,
    }
}

/// The answer to a query (already checked with [`check_query`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub groups: Vec<AggregateGroup>,
    pub suppressed: u32,
    pub noised: bool,
}

/// Computes an aggregate: contributions are per enterprise (its rows in a group summed, then
/// clipped to the policy's bound when noised) and groups with fewer distinct enterprises than the
/// minimum are suppressed. With differential privacy, half of the query's epsilon decides which
/// groups are released at all ([`PartitionSelection`]: the set of keys, and how many were held
/// back, would otherwise be exact) and the other half noises each released value with discrete
/// Laplace noise of scale (groups per enterprise × sensitivity) / epsilon; the number of groups
/// held back is not told. MEAN is a noisy sum over a noisy count, each with half of that.
pub fn aggregate<'a>(
    rows_in: impl Iterator<Item = &'a IndustryRow>,
    function: AggregateFunction,
    metric: &str,
    group_by: &[String],
    filters: &[RowFilter],
    policy: &CompiledPolicy,
    rng: &mut dyn Randomness,
) -> Result<Answer, Refusal> {
    let agg = policy.aggregation();
    let dp = agg.differential_privacy;
    let per_enterprise = u128::from(agg.max_groups_per_enterprise.max(1));
    // group key -> enterprise -> summed metric
    let mut groups: BTreeMap<Vec<String>, HashMap<&str, i64>> = BTreeMap::new();
    for row in rows_in.filter(|r| passes(r, filters, policy)) {
        let key: Vec<String> = group_by.iter().map(|g| group_value(row, g, policy)).collect();
        let m = rows::metric(row, metric).unwrap_or(0);
        let e = groups.entry(key).or_default().entry(row.enterprise_uscc.as_str()).or_insert(0);
        *e = e.saturating_add(m);
    }
    if dp {
        bound_contributions(&mut groups, per_enterprise as usize, rng);
    }
    let bound = policy.sum_bound(metric).unwrap_or(i64::MAX);
    // Exactly what the query was charged.
    let eps = epsilon_cost_milli(policy).max(2);
    let select_eps = eps / 2;
    let value_eps = eps - select_eps;
    let selection =
        PartitionSelection::new(agg.min_group_size, agg.max_groups_per_enterprise, select_eps, agg.delta_per_query);
    let mut out = Vec::new();
    let mut suppressed = 0u32;
    for (key, members) in groups {
        let size = members.len() as u64;
        let released = if dp { selection.keep(rng, size) } else { size >= u64::from(agg.min_group_size) };
        if !released {
            suppressed = suppressed.saturating_add(1);
            continue;
        }
        let count = members.len() as i128;
        let sum: i128 = members.values().map(|v| i128::from(if dp { (*v).clamp(0, bound) } else { *v })).sum();
        let sensitivity = per_enterprise.saturating_mul(bound.unsigned_abs().into());
        let value = match (function, dp) {
            (AggregateFunction::Count, false) => count as f64,
            (AggregateFunction::Sum, false) => sum as f64,
            (AggregateFunction::Mean, false) => sum as f64 / count as f64,
            (AggregateFunction::Count, true) => (count + noise(rng, per_enterprise, value_eps)) as f64,
            (AggregateFunction::Sum, true) => (sum + noise(rng, sensitivity, value_eps)) as f64,
            (AggregateFunction::Mean, true) => {
                let half = (value_eps / 2).max(1);
                let noisy_sum = sum + noise(rng, sensitivity, half);
                let noisy_count = (count + noise(rng, per_enterprise, half)).max(1);
                noisy_sum as f64 / noisy_count as f64
            }
            (AggregateFunction::Unspecified, _) => return Err((Reason::InvalidArgument, "no function".into())),
        };
        out.push(AggregateGroup { key, value });
    }
    if dp {
        // Which groups were held back, and how many, is what selection keeps private: an answer
        // with no group is an answer, not a refusal that would say something was held back.
        return Ok(Answer { groups: out, suppressed: 0, noised: true });
    }
    if out.is_empty() && suppressed > 0 {
        return Err((
            Reason::GroupTooSmall,
            format!("all {suppressed} group(s) have fewer than {} enterprises", agg.min_group_size),
        ));
    }
    Ok(Answer { groups: out, suppressed, noised: false })
}

/// Keeps each enterprise in at most `max` groups, chosen at random.
fn bound_contributions(groups: &mut BTreeMap<Vec<String>, HashMap<&str, i64>>, max: usize, rng: &mut dyn Randomness) {
    let mut membership: BTreeMap<&str, Vec<Vec<String>>> = BTreeMap::new();
    for (k, members) in groups.iter() {
        for e in members.keys() {
            membership.entry(e).or_default().push(k.clone());
        }
    }
    let mut remove: Vec<(Vec<String>, String)> = Vec::new();
    for (e, mut keys) in membership {
        while keys.len() > max {
            let i = rng.below(keys.len() as u128) as usize;
            remove.push((keys.swap_remove(i), e.to_string()));
        }
    }
    for (k, e) in remove {
        if let Some(m) = groups.get_mut(&k) {
            m.remove(e.as_str());
        }
    }
    groups.retain(|_, m| !m.is_empty());
}

/// A row as it may leave: each field by its rule (no rule: dropped), the negative list's fields
/// always dropped. Returns the row and the names of the dropped fields.
pub fn minimise(
    row: &IndustryRow,
    policy: &CompiledPolicy,
    negative: Option<&NegativeList>,
    pair_key: &[u8; 32],
) -> (MinimisedRow, BTreeSet<String>) {
    let mut fields = HashMap::new();
    let mut dropped = BTreeSet::new();
    for f in rows::FIELDS {
        let forbidden = negative.is_some_and(|n| n.fields.contains(f));
        let value = rows::field(row, f).unwrap_or_default();
        match (forbidden, policy.field(f)) {
            (false, Some(FieldTreatment::Keep)) => {
                fields.insert(f.to_string(), value);
            }
            (false, Some(FieldTreatment::Pseudonymise)) => {
                fields.insert(f.to_string(), pseudonymise(pair_key, &value));
            }
            (false, Some(FieldTreatment::Generalise(g))) => {
                fields.insert(f.to_string(), g.apply(&value));
            }
            _ => {
                dropped.insert(f.to_string());
            }
        }
    }
    (MinimisedRow { fields }, dropped)
}

/// Whether a row is within the policy's filter and the request's filters.
pub fn row_selected(row: &IndustryRow, filters: &[RowFilter], policy: &CompiledPolicy) -> bool {
    passes(row, filters, policy)
}

#[cfg(test)]
mod tests {
    use ftz_core::envelope::{self, PayloadType};
    use ftz_proto::{AggregateFunction as F, ExchangePolicy, IndustryRow, RowFilter};

    use super::*;
    use crate::{dp::tests::Seeded, exchange::tests::industry_policy, testkit::key};

    fn compile(doc: &ExchangePolicy) -> CompiledPolicy {
        CompiledPolicy::compile(envelope::seal(PayloadType::EXCHANGE_POLICY, doc, &[&key()])).unwrap()
    }

    fn exact() -> CompiledPolicy {
        let mut p = industry_policy();
        p.aggregation.as_mut().unwrap().differential_privacy = false;
        compile(&p)
    }

    /// `n` enterprises in industry C4011 in region 310115 and 2 in C4012, one row per quarter.
    fn rows(n: usize) -> Vec<IndustryRow> {
        let mut out = Vec::new();
        for i in 0..n + 2 {
            let first17 = format!("9131011500000{i:04}");
            let uscc = format!("{first17}{}", ftz_core::records::uscc_check_char(&first17).unwrap());
            for q in ["2026-Q1", "2026-Q2"] {
                out.push(IndustryRow {
                    line: 0,
                    enterprise_uscc: uscc.clone(),
                    enterprise_name: format!("E{i}"),
                    industry_code: if i < n { "C4011".into() } else { "C4012".into() },
                    region: "310115".into(),
                    period: q.into(),
                    output_value: 1_000_000 * (i as i64 + 1),
                    employment: 10,
                    capacity: 0,
                });
            }
        }
        out
    }

    #[test]
    fn exact_aggregates_suppress_small_groups() {
        let p = exact();
        let data = rows(4);
        let by = vec!["industry_code".to_string()];
        // Exact answers only over the policy's one partition (see the next test).
        let whole: Vec<String> = ["region", "period", "industry_code"].map(String::from).to_vec();
        check_query(&p, F::Count, "", &whole, &[]).unwrap();
        let a = aggregate(data.iter(), F::Count, "", &by, &[], &p, &mut Seeded(1)).unwrap();
        // C4011 has 4 enterprises (kept, counted once each across periods); C4012 has 2 (< 3).
        assert_eq!(a.groups.len(), 1);
        assert_eq!((a.groups[0].key.clone(), a.groups[0].value, a.suppressed), (vec!["C4011".to_string()], 4.0, 1));
        let sum = aggregate(data.iter(), F::Sum, "output_value", &by, &[], &p, &mut Seeded(1)).unwrap();
        assert_eq!(sum.groups[0].value, 2.0 * (1.0 + 2.0 + 3.0 + 4.0) * 1_000_000.0);
        // Grouping by a generalised field groups by the generalised value.
        let by_year = vec!["period".to_string()];
        let y = aggregate(data.iter(), F::Mean, "employment", &by_year, &[], &p, &mut Seeded(1)).unwrap();
        assert_eq!((y.groups[0].key.clone(), y.groups[0].value), (vec!["2026".to_string()], 20.0));
        // Filters narrow; when every group is small the answer is refused.
        let only_c4012 = [RowFilter { field: "industry_code".into(), prefix: "C4012".into() }];
        let err = aggregate(data.iter(), F::Count, "", &by, &only_c4012, &p, &mut Seeded(1)).unwrap_err();
        assert_eq!(err.0, Reason::GroupTooSmall);
    }

    /// Finding: under `min_group_size = 5` and no noise, SUM filtered on C38 minus SUM filtered
    /// on C381 was exactly the one C382 enterprise's figure, both answers over groups of 5+.
    #[test]
    fn exact_answers_cannot_be_differenced() {
        let p = exact();
        let c38 = [RowFilter { field: "industry_code".into(), prefix: "C38".into() }];
        let c381 = [RowFilter { field: "industry_code".into(), prefix: "C381".into() }];
        let whole: Vec<String> = ["industry_code", "period", "region"].map(String::from).to_vec();
        for f in [&c38[..], &c381[..]] {
            let e = check_query(&p, F::Sum, "output_value", &whole, f).unwrap_err();
            assert_eq!(e.0, Reason::FieldNotAllowed, "{}", e.1);
        }
        // Nor can a coarser partition be subtracted from a finer one.
        for part in [vec!["industry_code".to_string()], whole[..2].to_vec(), vec![whole[0].clone(); 3]] {
            assert_eq!(check_query(&p, F::Sum, "output_value", &part, &[]).unwrap_err().0, Reason::FieldNotAllowed);
        }
        check_query(&p, F::Sum, "output_value", &whole, &[]).unwrap();
    }

    #[test]
    fn filters_and_metrics_obey_the_field_rules() {
        let p = compile(&industry_policy());
        let data = rows(120);
        // The period leaves as a year: a filter on one month matches nothing, on the year all.
        let month = [RowFilter { field: "period".into(), prefix: data[0].period[..7].to_string() }];
        let year = [RowFilter { field: "period".into(), prefix: data[0].period[..4].to_string() }];
        let by = vec!["industry_code".to_string()];
        assert!(data[0].period.len() > 4, "{}", data[0].period);
        let none = aggregate(data.iter(), F::Count, "", &by, &month, &p, &mut Seeded(1)).unwrap();
        assert_eq!((none.groups.len(), none.suppressed), (0, 0));
        let all = aggregate(data.iter(), F::Count, "", &by, &year, &p, &mut Seeded(1)).unwrap();
        assert!(!all.groups.is_empty());
        // A metric the policy drops (or names no rule for) cannot be summed.
        let mut doc = industry_policy();
        doc.field_rules.retain(|r| r.field != "output_value");
        let no_rule = compile(&doc);
        assert_eq!(check_query(&no_rule, F::Sum, "output_value", &[], &[]).unwrap_err().0, Reason::FieldNotAllowed);
    }

    #[test]
    fn queries_outside_the_policy_are_refused() {
        let p = compile(&industry_policy());
        let name = vec!["enterprise_name".to_string()];
        assert_eq!(check_query(&p, F::Count, "", &name, &[]).unwrap_err().0, Reason::FieldNotAllowed);
        let f = [RowFilter { field: "enterprise_uscc".into(), prefix: "9131".into() }];
        assert_eq!(check_query(&p, F::Count, "", &[], &f).unwrap_err().0, Reason::FieldNotAllowed);
        // Under differential privacy a sum needs a clipping bound.
        assert_eq!(check_query(&p, F::Sum, "employment", &[], &[]).unwrap_err().0, Reason::FieldNotAllowed);
        check_query(&p, F::Sum, "output_value", &[], &[]).unwrap();
        assert_eq!(check_query(&p, F::Sum, "salary", &[], &[]).unwrap_err().0, Reason::InvalidArgument);
        assert_eq!(epsilon_cost_milli(&p), 500);
        assert_eq!(epsilon_cost_milli(&exact()), 0);
    }

    #[test]
    fn differential_privacy_adds_noise_and_bounds_contributions() {
        let p = compile(&industry_policy());
        let data = rows(80);
        let by = vec!["industry_code".to_string()];
        let answers: Vec<f64> = (0..400)
            .map(|i| aggregate(data.iter(), F::Count, "", &by, &[], &p, &mut Seeded(i)).unwrap().groups[0].value)
            .collect();
        let mean = answers.iter().sum::<f64>() / answers.len() as f64;
        // Noisy (not all equal), unbiased around the true count of 80 (scale 1/0.25 = 4: half the
        // epsilon goes to the values, half to choosing the groups).
        assert!(answers.iter().any(|v| (*v - 80.0).abs() >= 1.0), "no noise at all");
        assert!((mean - 80.0).abs() < 1.5, "mean {mean}");
        // Grouped by period, each enterprise is kept in one group only: counts add up to 202.
        let data = rows(200);
        let by_period = vec!["period".to_string()];
        let mut p2 = industry_policy();
        p2.field_rules[4].parameter = "quarter".into();
        let p2 = compile(&p2);
        let a = aggregate(data.iter(), F::Count, "", &by_period, &[], &p2, &mut Seeded(3)).unwrap();
        assert!(a.noised);
        let total: f64 = a.groups.iter().map(|g| g.value).sum();
        assert_eq!(a.groups.len(), 2, "both quarters have about 100 enterprises");
        assert!((total - 202.0).abs() < 30.0, "{total}: an enterprise counted in both quarters would give about 404");
    }

    /// Finding: under differential privacy which groups were released, and how many were held
    /// back, were exact: a group appeared exactly when it had `min_group_size` enterprises, so
    /// adding or removing one enterprise flipped it for certain, and `suppressed` counted them.
    #[test]
    fn under_differential_privacy_the_released_groups_are_noisy_too() {
        let p = compile(&industry_policy());
        let by = vec!["industry_code".to_string()];
        let released = |n: usize| {
            let data = rows(n);
            (0..1000)
                .filter(|i| {
                    let a = aggregate(data.iter(), F::Count, "", &by, &[], &p, &mut Seeded(*i)).unwrap();
                    assert_eq!(a.suppressed, 0, "how many groups were held back is not told");
                    a.groups.iter().any(|g| g.key == ["C4011"])
                })
                .count()
        };
        let min = industry_policy().aggregation.unwrap().min_group_size as usize;
        // A group at the minimum is (almost) never released, one far above it always, and in
        // between the decision is random: no single enterprise decides it.
        assert_eq!(released(min), 0);
        let sel = crate::dp::PartitionSelection::new(
            min as u32,
            1,
            250,
            industry_policy().aggregation.unwrap().delta_per_query,
        );
        let mid = min - 1 + sel.threshold() as usize;
        let r = released(mid);
        assert!((200..800).contains(&r), "{r} of 1000 released at the threshold ({mid} enterprises)");
        assert_eq!(released(mid + 80), 1000);
    }

    #[test]
    fn rows_are_minimised_field_by_field() {
        let p = compile(&industry_policy());
        let row = &rows(1)[0];
        let key = [1u8; 32];
        let (m, dropped) = minimise(row, &p, None, &key);
        assert_eq!(m.fields.get("industry_code").map(String::as_str), Some("C4011"));
        assert_eq!(m.fields.get("region").map(String::as_str), Some("3101"));
        assert_eq!(m.fields.get("period").map(String::as_str), Some("2026"));
        assert_eq!(m.fields.get("output_value").map(String::as_str), Some("[1000000, 2000000)"));
        assert!(m.fields["enterprise_uscc"].starts_with("p:"));
        assert_eq!(dropped.iter().map(String::as_str).collect::<Vec<_>>(), vec!["capacity", "enterprise_name"]);
        // The negative list wins over the policy.
        let neg = NegativeList { fields: ["employment".to_string()].into(), ..Default::default() };
        let (m, dropped) = minimise(row, &p, Some(&neg), &key);
        assert!(!m.fields.contains_key("employment") && dropped.contains("employment"));
    }
}
