//! The policy diff: each field kind, and properties over random policies.

use ftz_proto::{AggregationRules, ExchangePolicy, FieldAction, FieldRule, MetricBound, PolicyFilter, RateLimit};
use proptest::prelude::*;

use super::*;
use crate::{exchange::tests::industry_policy, rows, testkit::DAY};

fn paths(list: &[Change]) -> Vec<&str> {
    list.iter().map(|c| c.path.as_str()).collect()
}

fn rule(f: &str, a: FieldAction, p: &str) -> FieldRule {
    FieldRule { field: f.into(), action: a as i32, parameter: p.into() }
}

fn set_rule(p: &mut ExchangePolicy, f: &str, a: FieldAction, param: &str) {
    p.field_rules.retain(|r| r.field != f);
    p.field_rules.push(rule(f, a, param));
}

fn agg(p: &mut ExchangePolicy) -> &mut AggregationRules {
    p.aggregation.as_mut().unwrap()
}

/// Asserts NEW is reported widened at `path` and not strictly narrower.
#[track_caller]
fn widens(old: &ExchangePolicy, new: &ExchangePolicy, path: &str) {
    let d = diff_policies(old, new);
    assert!(paths(&d.widened).contains(&path), "{path} not widened in\n{d}");
    assert!(!d.strictly_narrower && !d.is_same, "{d}");
}

/// Asserts NEW is reported strictly narrower, at `path`.
#[track_caller]
fn narrows(old: &ExchangePolicy, new: &ExchangePolicy, path: &str) {
    let d = diff_policies(old, new);
    assert!(paths(&d.narrowed).contains(&path), "{path} not narrowed in\n{d}");
    assert!(d.strictly_narrower && d.widened.is_empty(), "{d}");
}

#[track_caller]
fn both(old: &ExchangePolicy, new: &ExchangePolicy, path: &str) {
    let d = diff_policies(old, new);
    assert!(paths(&d.widened).contains(&path) && paths(&d.narrowed).contains(&path), "{path} not both in\n{d}");
    assert!(!d.strictly_narrower && !d.is_same, "{d}");
}

#[test]
fn the_same_policy_is_the_same() {
    let p = industry_policy();
    let d = diff_policies(&p, &p);
    assert!(d.is_same && !d.strictly_narrower);
    assert!(d.widened.is_empty() && d.narrowed.is_empty() && d.neutral.is_empty());
    assert!(d.to_string().contains("exactly what OLD permits"));
}

#[test]
fn version_and_digest_are_neutral() {
    let old = industry_policy();
    let mut new = old.clone();
    new.version = 2;
    new.previous_digest = vec![7; 32];
    let d = diff_policies(&old, &new);
    assert!(d.is_same && !d.strictly_narrower, "{d}");
    assert_eq!(paths(&d.neutral), ["version", "previous_digest"]);
    assert_eq!((d.neutral[0].old.as_str(), d.neutral[0].new.as_str()), ("1", "2"));
}

#[test]
fn consumers_purposes_and_onward_zones_are_sets_of_permissions() {
    let old = industry_policy();
    for path in ["consumer_zones", "purposes", "onward_zones"] {
        let mut new = old.clone();
        let list = match path {
            "consumer_zones" => &mut new.consumer_zones,
            "purposes" => &mut new.purposes,
            _ => &mut new.onward_zones,
        };
        list.push("added".into());
        widens(&old, &new, path);
        let d = diff_policies(&old, &new);
        assert_eq!((d.widened[0].old.as_str(), d.widened[0].new.as_str()), (ABSENT, "added"));
        // And back: removing it narrows.
        narrows(&new, &old, path);
    }
    // A swapped purpose is both.
    let mut new = old.clone();
    new.purposes = vec!["research".into()];
    both(&old, &new, "purposes");
}

#[test]
fn filters_admit_all_when_empty_and_by_prefix() {
    let old = industry_policy(); // industry_prefixes ["C"]
    let mut new = old.clone();
    new.filter.as_mut().unwrap().industry_prefixes = vec![];
    widens(&old, &new, "filter.industry_prefixes");
    narrows(&new, &old, "filter.industry_prefixes");
    // C38 is inside C: replacing C by C38 narrows, and adding C38 next to C changes nothing.
    new.filter.as_mut().unwrap().industry_prefixes = vec!["C38".into()];
    narrows(&old, &new, "filter.industry_prefixes");
    widens(&new, &old, "filter.industry_prefixes");
    new.filter.as_mut().unwrap().industry_prefixes = vec!["C".into(), "C38".into()];
    let d = diff_policies(&old, &new);
    assert!(d.is_same, "{d}");
    assert_eq!(paths(&d.neutral), ["filter.industry_prefixes"]);
    // Record types are exact names: C38-style covering does not apply.
    let mut a = old.clone();
    a.filter = Some(PolicyFilter { record_types: vec!["AEO".into()], ..Default::default() });
    let mut b = a.clone();
    b.filter.as_mut().unwrap().record_types.push("AEO_ADVANCED".into());
    widens(&a, &b, "filter.record_types");
    // No filter message at all is the same as empty lists.
    let mut c = old.clone();
    c.filter = None;
    new.filter = Some(PolicyFilter::default());
    assert!(diff_policies(&c, &new).is_same);
}

#[test]
fn field_treatments_are_ordered() {
    let old = industry_policy();
    // enterprise_uscc is pseudonymised: kept widens, dropped narrows.
    let mut new = old.clone();
    set_rule(&mut new, "enterprise_uscc", FieldAction::Keep, "");
    widens(&old, &new, "field_rules.enterprise_uscc");
    set_rule(&mut new, "enterprise_uscc", FieldAction::Drop, "");
    narrows(&old, &new, "field_rules.enterprise_uscc");
    // Pseudonymised to generalised: incomparable.
    set_rule(&mut new, "enterprise_uscc", FieldAction::Generalise, "prefix:6");
    both(&old, &new, "field_rules.enterprise_uscc");
    // A field without a rule never leaves, exactly like a dropped one.
    let mut a = old.clone();
    a.field_rules.retain(|r| r.field != "enterprise_name"); // was DROP
    let d = diff_policies(&old, &a);
    assert!(d.is_same, "{d}");
    assert_eq!(paths(&d.neutral), ["field_rules.enterprise_name"]);
    // A new field (capacity had no rule) widens; the old value says so.
    let mut b = old.clone();
    set_rule(&mut b, "capacity", FieldAction::Keep, "");
    widens(&old, &b, "field_rules.capacity");
    let d = diff_policies(&old, &b);
    assert_eq!(d.widened[0].old, "no rule (never leaves)");
    assert_eq!(d.widened[0].new, "kept as it is");
    // Finer generalisations permit more.
    let mut c = old.clone();
    set_rule(&mut c, "period", FieldAction::Generalise, "quarter"); // was year
    widens(&old, &c, "field_rules.period");
    set_rule(&mut c, "region", FieldAction::Generalise, "prefix:2"); // was prefix:4
    set_rule(&mut c, "period", FieldAction::Generalise, "year");
    narrows(&old, &c, "field_rules.region");
    let mut e = old.clone();
    set_rule(&mut e, "output_value", FieldAction::Generalise, "range:1000"); // was range:1000000
    widens(&old, &e, "field_rules.output_value");
    // Generalised to kept widens; kept to generalised narrows.
    let mut k = old.clone();
    set_rule(&mut k, "output_value", FieldAction::Keep, "");
    widens(&old, &k, "field_rules.output_value");
    narrows(&k, &old, "field_rules.output_value");
    // A rule that does not parse is never read as narrower.
    let mut bad = old.clone();
    set_rule(&mut bad, "employment", FieldAction::Generalise, "year");
    both(&old, &bad, "field_rules.employment");
}

#[test]
fn aggregation_rules() {
    let old = industry_policy();
    let mut none = old.clone();
    none.aggregation = None;
    narrows(&old, &none, "aggregation");
    widens(&none, &old, "aggregation");

    let mut p = old.clone();
    agg(&mut p).min_group_size = 2; // was 3
    widens(&old, &p, "aggregation.min_group_size");
    narrows(&p, &old, "aggregation.min_group_size");

    let mut p = old.clone();
    agg(&mut p).group_by.pop();
    narrows(&old, &p, "aggregation.group_by");

    let mut p = old.clone();
    agg(&mut p).row_level = false;
    narrows(&old, &p, "aggregation.row_level");

    for (path, set) in [
        ("aggregation.epsilon_per_query", (|a: &mut AggregationRules| a.epsilon_per_query = 0.8) as fn(&mut _)),
        ("aggregation.epsilon_budget", |a| a.epsilon_budget = 2.0),
        ("aggregation.delta_per_query", |a| a.delta_per_query = 1e-5),
        ("aggregation.budget_period_ms", |a| a.budget_period_ms = DAY / 2),
    ] {
        let mut weaker = old.clone();
        set(agg(&mut weaker));
        widens(&old, &weaker, path);
        narrows(&weaker, &old, path);
    }

    // Turning noise off is both: exact answers, for the one named partition only.
    let mut exact = old.clone();
    agg(&mut exact).differential_privacy = false;
    both(&old, &exact, "aggregation.differential_privacy");
    // Without noise the privacy parameters mean nothing: neutral.
    let mut exact2 = exact.clone();
    agg(&mut exact2).epsilon_per_query = 0.9;
    let d = diff_policies(&exact, &exact2);
    assert!(d.is_same && paths(&d.neutral) == ["aggregation.epsilon_per_query"], "{d}");

    let mut p = old.clone();
    agg(&mut p).max_groups_per_enterprise = 0; // means 1, as before
    assert!(diff_policies(&old, &p).is_same);
    agg(&mut p).max_groups_per_enterprise = 3;
    both(&old, &p, "aggregation.max_groups_per_enterprise");

    // Sum bounds: under noise a new bound lets the metric be summed; a changed one is both.
    let mut p = old.clone();
    agg(&mut p).sum_bounds.push(MetricBound { metric: "employment".into(), bound: 10_000 });
    widens(&old, &p, "aggregation.sum_bounds.employment");
    let mut q = old.clone();
    agg(&mut q).sum_bounds[0].bound = 5;
    both(&old, &q, "aggregation.sum_bounds.output_value");
    // Without noise a bound only clips: a larger one widens.
    let mut r = exact.clone();
    agg(&mut r).sum_bounds[0].bound *= 2;
    widens(&exact, &r, "aggregation.sum_bounds.output_value");
    agg(&mut r).sum_bounds.clear();
    widens(&exact, &r, "aggregation.sum_bounds.output_value");
}

#[test]
fn retention_rate_and_validity() {
    let old = industry_policy();
    let mut p = old.clone();
    p.retention_ms = 60 * DAY;
    widens(&old, &p, "retention_ms");
    let d = diff_policies(&old, &p);
    assert_eq!((d.widened[0].old.as_str(), d.widened[0].new.as_str()), ("30 days", "60 days"));
    narrows(&p, &old, "retention_ms");

    // 10 per minute.
    let rate = |m, per| {
        let mut p = old.clone();
        p.rate_limit = Some(RateLimit { max_requests: m, per_ms: per });
        p
    };
    widens(&old, &rate(20, 60_000), "rate_limit");
    widens(&old, &rate(10, 30_000), "rate_limit");
    narrows(&old, &rate(5, 60_000), "rate_limit");
    narrows(&old, &rate(10, 120_000), "rate_limit");
    both(&old, &rate(20, 120_000), "rate_limit");
    assert_eq!(diff_policies(&old, &rate(5, 60_000)).narrowed[0].new, "5 requests per 1 minute");

    let mut p = old.clone();
    p.valid_until_ms += DAY;
    widens(&old, &p, "valid_until_ms");
    narrows(&p, &old, "valid_until_ms");
    let mut p = old.clone();
    p.valid_from_ms += DAY;
    narrows(&old, &p, "valid_from_ms");
    widens(&p, &old, "valid_from_ms");
}

#[test]
fn another_provider_or_class_is_both() {
    let old = industry_policy();
    let mut p = old.clone();
    p.provider_zone = "guangdong".into();
    both(&old, &p, "provider_zone");
    let mut p = old.clone();
    p.data_class = ftz_proto::DataClass::Certification as i32;
    both(&old, &p, "data_class");
}

#[test]
fn the_text_says_plainly_whether_it_is_narrower() {
    let old = industry_policy();
    let mut new = old.clone();
    new.version = 2;
    new.purposes.push("research".into());
    set_rule(&mut new, "capacity", FieldAction::Keep, "");
    let text = diff_policies(&old, &new).to_string();
    assert!(text.contains("NEW permits what OLD did not:\n  purposes: absent -> research (widened)"), "{text}");
    assert!(text.contains("field_rules.capacity: no rule (never leaves) -> kept as it is (widened)"), "{text}");
    assert!(text.contains("neutral:\n  version: 1 -> 2 (neutral)"), "{text}");
    assert!(text.ends_with("NEW is NOT narrower than OLD: it permits something OLD did not\n"), "{text}");
    new.purposes = vec![];
    new.field_rules.retain(|r| r.field != "capacity");
    assert!(diff_policies(&old, &new).to_string().ends_with("NEW is strictly narrower than OLD\n"));
}

// Properties over random policies.

const CONSUMERS: [&str; 4] = ["hainan", "qianhai", "hengqin", "lingang"];
const ONWARD: [&str; 3] = ["nansha", "suzhou", "tianjin"];
const PURPOSES: [&str; 5] = ["industrial-planning", "research", "statistics", "audit", "customs"];
const PREFIXES: [&str; 4] = ["C", "C3", "D4", "E"];

/// A rule for a field from a choice (0 keep, 1 drop, 2 pseudonymise, 3 generalise) and a
/// number, generalising only where the field allows it.
fn make_rule(field: &str, action: u8, n: u8) -> FieldRule {
    let param = match field {
        "period" => Some(if n.is_multiple_of(2) { "year".to_string() } else { "quarter".to_string() }),
        "industry_code" | "region" | "enterprise_uscc" => Some(format!("prefix:{}", n % 16 + 1)),
        f if rows::is_metric(f) => Some(format!("range:{}", u32::from(n) * 100 + 1)),
        _ => None,
    };
    match (action, param) {
        (0, _) => rule(field, FieldAction::Keep, ""),
        (1, _) => rule(field, FieldAction::Drop, ""),
        (2, _) | (_, None) => rule(field, FieldAction::Pseudonymise, ""),
        (_, Some(p)) => rule(field, FieldAction::Generalise, &p),
    }
}

fn subset<const N: usize>(all: [&'static str; N], min: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all.to_vec(), min..=N).prop_map(|v| v.into_iter().map(String::from).collect())
}

fn arb_policy() -> impl Strategy<Value = ExchangePolicy> {
    let rules = proptest::collection::vec(proptest::option::of((0u8..4, any::<u8>())), rows::FIELDS.len());
    let aggregation = proptest::option::of((
        subset(["industry_code", "region", "period"], 0),
        2u32..20,
        any::<bool>(),
        (1u32..1000, 1u32..1000, 1u32..1000, 1i64..100),
        any::<bool>(),
        0u32..5,
        proptest::collection::vec((0usize..3, 1i64..1_000_000), 0..3),
    ));
    (
        subset(CONSUMERS, 1),
        subset(PURPOSES, 1),
        subset(PREFIXES, 0),
        rules,
        aggregation,
        (1i64..1000, subset(ONWARD, 0), 1u32..100, 1i64..100),
        (0i64..1000, 1i64..1000),
    )
        .prop_map(
            |(consumers, purposes, prefixes, rules, aggregation, (retention, onward, max, per), (from, len))| {
                let field_rules =
                    rows::FIELDS.iter().zip(rules).filter_map(|(f, r)| r.map(|(a, n)| make_rule(f, a, n))).collect();
                let aggregation =
                    aggregation.map(|(group_by, min, dp, (e, b, d, period), row_level, groups, bounds)| {
                        let mut sum_bounds: Vec<MetricBound> = Vec::new();
                        for (m, bound) in bounds {
                            if !sum_bounds.iter().any(|s| s.metric == rows::METRICS[m]) {
                                sum_bounds.push(MetricBound { metric: rows::METRICS[m].into(), bound });
                            }
                        }
                        AggregationRules {
                            group_by,
                            min_group_size: min,
                            differential_privacy: dp,
                            epsilon_per_query: f64::from(e) / 1000.0,
                            epsilon_budget: f64::from(e + b) / 1000.0,
                            budget_period_ms: period * 60_000,
                            sum_bounds,
                            row_level,
                            max_groups_per_enterprise: groups,
                            delta_per_query: f64::from(d) * 1e-6,
                        }
                    });
                ExchangePolicy {
                    policy_id: "random".into(),
                    version: 1,
                    previous_digest: vec![],
                    provider_zone: "shanghai".into(),
                    consumer_zones: consumers,
                    data_class: ftz_proto::DataClass::IndustryData as i32,
                    filter: Some(PolicyFilter { industry_prefixes: prefixes, ..Default::default() }),
                    purposes,
                    field_rules,
                    aggregation,
                    retention_ms: retention * DAY,
                    onward_zones: onward,
                    rate_limit: Some(RateLimit { max_requests: max, per_ms: per * 1000 }),
                    valid_from_ms: from * DAY,
                    valid_until_ms: (from + len) * DAY,
                }
            },
        )
}

/// A stricter rule for a field, and whether it is strictly stricter (a DROP rule removed is
/// not: no rule and DROP both mean the field never leaves).
fn stricter(r: &FieldRule) -> (Option<FieldRule>, bool) {
    let drop = Some(rule(&r.field, FieldAction::Drop, ""));
    match FieldAction::try_from(r.action).unwrap() {
        FieldAction::Keep => (Some(rule(&r.field, FieldAction::Pseudonymise, "")), true),
        FieldAction::Pseudonymise => (drop, true),
        FieldAction::Drop => (None, false),
        _ => match Generalisation::parse(&r.field, &r.parameter).unwrap() {
            Generalisation::Quarter => (Some(rule(&r.field, FieldAction::Generalise, "year")), true),
            Generalisation::Prefix(n) if n > 1 => {
                (Some(rule(&r.field, FieldAction::Generalise, &format!("prefix:{}", n - 1))), true)
            }
            Generalisation::Range(n) => {
                (Some(rule(&r.field, FieldAction::Generalise, &format!("range:{}", n * 2))), true)
            }
            _ => (drop, true),
        },
    }
}

/// Applies narrowing step `op` (choosing with `pick`); returns whether it withdrew something
/// for certain (false when it could not apply or changed nothing the policy permits).
fn narrow(p: &mut ExchangePolicy, op: u8, pick: usize) -> bool {
    let remove = |v: &mut Vec<String>| {
        if v.is_empty() {
            false
        } else {
            let i = pick % v.len();
            v.remove(i);
            true
        }
    };
    let dp = p.aggregation.as_ref().is_some_and(|a| a.differential_privacy);
    match op % 14 {
        0 => remove(&mut p.consumer_zones),
        1 => remove(&mut p.purposes),
        2 => remove(&mut p.onward_zones),
        3 => {
            if p.field_rules.is_empty() {
                return false;
            }
            let i = pick % p.field_rules.len();
            let r = p.field_rules.remove(i);
            // Removing a rule: the field never leaves; that withdraws something unless it was DROP.
            r.action != FieldAction::Drop as i32
        }
        4 => {
            if p.field_rules.is_empty() {
                return false;
            }
            let i = pick % p.field_rules.len();
            let (r, effective) = stricter(&p.field_rules[i]);
            match r {
                Some(r) => p.field_rules[i] = r,
                None => {
                    p.field_rules.remove(i);
                }
            }
            effective
        }
        5 => match p.aggregation.as_mut() {
            Some(a) => {
                a.min_group_size += 1 + pick as u32 % 5;
                true
            }
            None => false,
        },
        6 => match p.aggregation.as_mut() {
            Some(a) => {
                a.epsilon_per_query /= 2.0;
                a.epsilon_budget /= 2.0;
                dp
            }
            None => false,
        },
        7 => match p.aggregation.as_mut() {
            Some(a) => remove(&mut a.group_by),
            None => false,
        },
        8 => p.aggregation.take().is_some(),
        9 => {
            if p.retention_ms > 1 {
                p.retention_ms -= 1 + (pick % 1_000_000) as i64 % (p.retention_ms - 1);
                true
            } else {
                false
            }
        }
        10 => {
            let r = p.rate_limit.as_mut().unwrap();
            if r.max_requests > 1 {
                r.max_requests -= 1;
                true
            } else {
                r.per_ms *= 2;
                true
            }
        }
        11 => {
            let len = p.valid_until_ms - p.valid_from_ms;
            if len > 2 {
                p.valid_until_ms -= 1;
                p.valid_from_ms += 1;
                true
            } else {
                false
            }
        }
        12 => {
            // A narrower filter: a longer prefix instead of one, or one prefix where there was
            // none (admits all).
            let f = p.filter.as_mut().unwrap();
            if f.industry_prefixes.is_empty() {
                f.industry_prefixes.push("C".into());
            } else {
                let i = pick % f.industry_prefixes.len();
                let longer = format!("{}9", f.industry_prefixes[i]);
                f.industry_prefixes[i] = longer.clone();
                // Still admitted by another entry? Then nothing was withdrawn.
                return !f.industry_prefixes.iter().any(|q| q != &longer && longer.starts_with(q.as_str()));
            }
            true
        }
        _ => match p.aggregation.as_mut() {
            Some(a) if a.row_level => {
                a.row_level = false;
                true
            }
            Some(a) => {
                a.delta_per_query /= 2.0;
                dp
            }
            None => false,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (a) A random narrowing of a policy is reported strictly narrower (or the same, when no
    /// step withdrew anything), never as permitting something new.
    #[test]
    fn a_narrowing_is_strictly_narrower(old in arb_policy(), ops in proptest::collection::vec((any::<u8>(), any::<usize>()), 1..6)) {
        let mut new = old.clone();
        let mut effective = false;
        for (op, pick) in ops {
            effective |= narrow(&mut new, op, pick);
        }
        let d = diff_policies(&old, &new);
        prop_assert!(d.widened.is_empty(), "a narrowing reported as widening:\n{}", d);
        prop_assert!(d.strictly_narrower != d.is_same, "{}", d);
        if effective {
            prop_assert!(d.strictly_narrower, "not strictly narrower:\n{}", d);
        }
        if new == old {
            prop_assert!(d.is_same);
        }
        // And the other way round, the widening is never reported as narrower.
        let back = diff_policies(&new, &old);
        prop_assert!(back.narrowed.is_empty() && !back.strictly_narrower, "{}", back);
    }

    /// (b) Anything added (a purpose, a consumer, an onward zone, a field) or a weaker privacy
    /// parameter is reported as permitted by NEW.
    #[test]
    fn an_addition_is_widened(old in arb_policy(), what in 0u8..7, pick in any::<usize>()) {
        let mut new = old.clone();
        let path = match what {
            0 => { new.purposes.push("newly-added".into()); "purposes".to_string() }
            1 => { new.consumer_zones.push("newzone".into()); "consumer_zones".into() }
            2 => { new.onward_zones.push("newonward".into()); "onward_zones".into() }
            3 => {
                let f = rows::FIELDS[pick % rows::FIELDS.len()];
                let was_keep = new.field_rules.iter().any(|r| r.field == f && r.action == FieldAction::Keep as i32);
                prop_assume!(!was_keep);
                set_rule(&mut new, f, FieldAction::Keep, "");
                format!("field_rules.{f}")
            }
            4 => {
                prop_assume!(old.aggregation.as_ref().is_some_and(|a| a.differential_privacy));
                agg(&mut new).epsilon_per_query *= 1.5;
                "aggregation.epsilon_per_query".into()
            }
            5 => {
                prop_assume!(old.aggregation.as_ref().is_some_and(|a| a.min_group_size > 2));
                agg(&mut new).min_group_size -= 1;
                "aggregation.min_group_size".into()
            }
            _ => {
                prop_assume!(old.aggregation.as_ref().is_some_and(|a| a.differential_privacy));
                agg(&mut new).delta_per_query *= 2.0;
                "aggregation.delta_per_query".into()
            }
        };
        let d = diff_policies(&old, &new);
        prop_assert!(paths(&d.widened).contains(&path.as_str()), "{} not widened:\n{}", path, d);
        prop_assert!(!d.strictly_narrower && !d.is_same);
    }

    /// (c) A policy against itself is the same, with no change at all.
    #[test]
    fn a_policy_is_the_same_as_itself(p in arb_policy()) {
        let d = diff_policies(&p, &p);
        prop_assert!(d.is_same && !d.strictly_narrower);
        prop_assert!(d.widened.is_empty() && d.narrowed.is_empty() && d.neutral.is_empty());
    }
}
