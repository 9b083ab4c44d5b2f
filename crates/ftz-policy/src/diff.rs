//! The exact difference between two exchange policies, field by field: what NEW permits that
//! OLD did not (`widened`), what NEW no longer permits (`narrowed`), and changes that permit
//! nothing more or less (`neutral`), with a plain answer to "is NEW strictly narrower?". What
//! a reviewing authority reads before signing the next version of a policy. Pure: works on the
//! decoded documents, whether or not they would compile (a policy that does not compile is
//! refused at install anyway; the diff still shows what it says).
//!
//! Each change is named by a stable machine path that follows the proto message
//! (`consumer_zones`, `purposes`, `filter.hs_prefixes`, `field_rules.<field>`,
//! `aggregation.min_group_size`, `aggregation.epsilon_per_query`, `retention_ms`,
//! `onward_zones`, `rate_limit`, `valid_from_ms`, `valid_until_ms`, ...).
//!
//! A change that lets something new through *and* withdraws something (turning differential
//! privacy off, say: exact answers, but only for the one partition the policy names) is
//! [`Direction::Both`] and is listed under both `widened` and `narrowed`: a reviewer must not
//! read it as a pure narrowing.

use std::{cmp::Ordering, collections::BTreeMap, fmt};

use ftz_proto::{AggregationRules, DataClass, ExchangePolicy, FieldAction, FieldRule};

use crate::{
    exchange::{FieldTreatment, class_name, duration_words},
    transform::Generalisation,
};

/// Which way one change moves what the policy permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// NEW permits something OLD did not.
    Widened,
    /// NEW no longer permits something OLD did.
    Narrowed,
    /// Both at once: incomparable.
    Both,
    /// Permits exactly the same (a version number, a digest, a rule that means the same).
    Neutral,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Widened => "widened",
            Direction::Narrowed => "narrowed",
            Direction::Both => "widened and narrowed",
            Direction::Neutral => "neutral",
        }
    }

    fn widens(self) -> bool {
        matches!(self, Direction::Widened | Direction::Both)
    }

    fn narrows(self) -> bool {
        matches!(self, Direction::Narrowed | Direction::Both)
    }
}

/// One change: the field's path, its old and new values in words, and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub old: String,
    pub new: String,
    pub direction: Direction,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {} ({})", self.path, self.old, self.new, self.direction.as_str())
    }
}

/// The difference between OLD and NEW.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    /// What NEW permits that OLD did not (including [`Direction::Both`] changes).
    pub widened: Vec<Change>,
    /// What NEW no longer permits (including [`Direction::Both`] changes).
    pub narrowed: Vec<Change>,
    /// Changes that permit neither more nor less.
    pub neutral: Vec<Change>,
    /// NEW permits nothing OLD did not, and withdraws something.
    pub strictly_narrower: bool,
    /// NEW permits exactly what OLD did (neutral changes aside).
    pub is_same: bool,
}

/// Marker for a value that is not there (an added or removed list entry, a missing rule).
pub const ABSENT: &str = "absent";

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let section = |f: &mut fmt::Formatter<'_>, title: &str, list: &[Change]| -> fmt::Result {
            if !list.is_empty() {
                writeln!(f, "{title}")?;
                for c in list {
                    writeln!(f, "  {c}")?;
                }
            }
            Ok(())
        };
        section(f, "NEW permits what OLD did not:", &self.widened)?;
        section(f, "NEW no longer permits:", &self.narrowed)?;
        section(f, "neutral:", &self.neutral)?;
        let verdict = if self.is_same {
            "NEW permits exactly what OLD permits"
        } else if self.strictly_narrower {
            "NEW is strictly narrower than OLD"
        } else {
            "NEW is NOT narrower than OLD: it permits something OLD did not"
        };
        writeln!(f, "{verdict}")
    }
}

#[derive(Default)]
struct Acc(Vec<Change>);

impl Acc {
    fn push(&mut self, path: impl Into<String>, old: impl Into<String>, new: impl Into<String>, direction: Direction) {
        self.0.push(Change { path: path.into(), old: old.into(), new: new.into(), direction });
    }

    /// A scalar where more is wider (`more_widens`) or narrower.
    fn ordered<T: PartialOrd>(&mut self, path: &str, old: T, new: T, more_widens: bool, show: impl Fn(&T) -> String) {
        let dir = match new.partial_cmp(&old) {
            Some(Ordering::Equal) => return,
            Some(Ordering::Greater) if more_widens => Direction::Widened,
            Some(Ordering::Greater) => Direction::Narrowed,
            Some(Ordering::Less) if more_widens => Direction::Narrowed,
            Some(Ordering::Less) => Direction::Widened,
            // NaN: nothing can be said.
            None => Direction::Both,
        };
        self.push(path, show(&old), show(&new), dir);
    }

    /// A set of names where each one is a permission (consumers, purposes, onward zones,
    /// group-bys): an added one widens, a removed one narrows.
    fn set(&mut self, path: &str, old: &[String], new: &[String]) {
        for n in new.iter().filter(|n| !old.contains(n)) {
            self.push(path, ABSENT, n.as_str(), Direction::Widened);
        }
        for o in old.iter().filter(|o| !new.contains(o)) {
            self.push(path, o.as_str(), ABSENT, Direction::Narrowed);
        }
    }

    /// A filter list: empty admits all; otherwise exact names (`prefix` false) or prefixes.
    fn filter(&mut self, path: &str, old: &[String], new: &[String], prefix: bool) {
        let any = |v: &[String]| if v.is_empty() { "any".to_string() } else { v.join(", ") };
        match (old.is_empty(), new.is_empty()) {
            (true, true) => {}
            (true, false) => self.push(path, any(old), any(new), Direction::Narrowed),
            (false, true) => self.push(path, any(old), any(new), Direction::Widened),
            (false, false) => {
                // Whatever `x` admits, `y` admits too when `y` is a prefix of `x`.
                let covered = |x: &str, by: &[String]| prefix && by.iter().any(|y| x.starts_with(y.as_str()));
                for n in new.iter().filter(|n| !old.contains(n)) {
                    let dir = if covered(n, old) { Direction::Neutral } else { Direction::Widened };
                    self.push(path, ABSENT, n.as_str(), dir);
                }
                for o in old.iter().filter(|o| !new.contains(o)) {
                    let dir = if covered(o, new) { Direction::Neutral } else { Direction::Narrowed };
                    self.push(path, o.as_str(), ABSENT, dir);
                }
            }
        }
    }

    /// A change that is neither wider nor narrower in kind (a different provider, say).
    fn changed(&mut self, path: &str, old: String, new: String, dir: Direction) {
        if old != new {
            self.push(path, old, new, dir);
        }
    }
}

/// A field rule as the node applies it; `Err` holds a rule that does not parse (such a policy
/// is refused at install).
fn treatment(r: &FieldRule) -> Result<FieldTreatment, String> {
    match FieldAction::try_from(r.action) {
        Ok(FieldAction::Keep) => Ok(FieldTreatment::Keep),
        Ok(FieldAction::Drop) => Ok(FieldTreatment::Drop),
        Ok(FieldAction::Pseudonymise) => Ok(FieldTreatment::Pseudonymise),
        Ok(FieldAction::Generalise) => Generalisation::parse(&r.field, &r.parameter).map(FieldTreatment::Generalise),
        _ => Err(format!("invalid rule (action {}, parameter {:?})", r.action, r.parameter)),
    }
}

/// How much of a value a generalisation lets through: `Greater` when `a` is finer than `b`.
/// A quarter is finer than a year; a longer prefix is finer; a narrower range is finer.
fn fineness(a: Generalisation, b: Generalisation) -> Option<Ordering> {
    use Generalisation::*;
    match (a, b) {
        (Quarter, Quarter) | (Year, Year) => Some(Ordering::Equal),
        (Quarter, Year) => Some(Ordering::Greater),
        (Year, Quarter) => Some(Ordering::Less),
        (Prefix(x), Prefix(y)) => Some(x.cmp(&y)),
        (Range(x), Range(y)) => Some(y.cmp(&x)),
        _ => None,
    }
}

/// The order of field treatments, most permissive first:
///
/// keep > {pseudonymise, generalise} > drop = no rule.
///
/// Why: `evaluate` lets a field be asked for when it has a rule other than DROP, so DROP and no
/// rule both mean "never leaves" and are equal. KEEP sends the value itself, which determines
/// both a pseudonym (linkable, not reversible) and any generalisation (coarser), so it is above
/// both. PSEUDONYMISE and GENERALISE are incomparable: a pseudonym lets the consumer link rows
/// of one value but reveals nothing about it, a generalisation reveals a coarse value (and is
/// what group-bys and sums need, see `check_query`) but links only coarsely; moving from one to
/// the other gains and loses something. Among generalisations of one field, the finer one
/// (quarter over year, a longer prefix, a narrower range) permits more.
fn treatment_direction(
    old: Option<&Result<FieldTreatment, String>>,
    new: Option<&Result<FieldTreatment, String>>,
) -> Direction {
    use FieldTreatment::*;
    let norm = |t: Option<&Result<FieldTreatment, String>>| match t {
        None => Ok(Drop),
        Some(t) => t.clone(),
    };
    let (old, new) = match (norm(old), norm(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => return if o == n { Direction::Neutral } else { Direction::Both },
    };
    let rank = |t: FieldTreatment| match t {
        Drop => 0,
        Pseudonymise | Generalise(_) => 1,
        Keep => 2,
    };
    let ord = match (old, new) {
        (Generalise(a), Generalise(b)) => fineness(b, a),
        (Pseudonymise, Generalise(_)) | (Generalise(_), Pseudonymise) => None,
        (o, n) => Some(rank(n).cmp(&rank(o))),
    };
    match ord {
        Some(Ordering::Equal) => Direction::Neutral,
        Some(Ordering::Greater) => Direction::Widened,
        Some(Ordering::Less) => Direction::Narrowed,
        None => Direction::Both,
    }
}

fn treatment_words(t: Option<&Result<FieldTreatment, String>>) -> String {
    match t {
        None => "no rule (never leaves)".into(),
        Some(Ok(t)) => t.to_string(),
        Some(Err(e)) => e.clone(),
    }
}

fn field_rules(acc: &mut Acc, old: &[FieldRule], new: &[FieldRule]) {
    let map = |rules: &[FieldRule]| -> BTreeMap<String, Result<FieldTreatment, String>> {
        rules.iter().map(|r| (r.field.clone(), treatment(r))).collect()
    };
    let (old, new) = (map(old), map(new));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for f in names {
        let (o, n) = (old.get(f), new.get(f));
        let (ow, nw) = (treatment_words(o), treatment_words(n));
        if ow != nw {
            acc.push(format!("field_rules.{f}"), ow, nw, treatment_direction(o, n));
        }
    }
}

fn aggregation(acc: &mut Acc, old: Option<&AggregationRules>, new: Option<&AggregationRules>) {
    let summary = |a: &AggregationRules| {
        format!(
            "group by [{}], groups of at least {}, {}",
            a.group_by.join(", "),
            a.min_group_size,
            if a.differential_privacy { format!("epsilon {} per query", a.epsilon_per_query) } else { "exact".into() }
        )
    };
    let (o, n) = match (old, new) {
        (None, None) => return,
        (None, Some(n)) => return acc.push("aggregation", "no aggregate queries", summary(n), Direction::Widened),
        (Some(o), None) => return acc.push("aggregation", summary(o), "no aggregate queries", Direction::Narrowed),
        (Some(o), Some(n)) => (o, n),
    };
    acc.set("aggregation.group_by", &o.group_by, &n.group_by);
    // Groups smaller than this are suppressed: a larger minimum releases fewer groups.
    acc.ordered("aggregation.min_group_size", o.min_group_size, n.min_group_size, false, u32::to_string);
    acc.ordered("aggregation.row_level", o.row_level, n.row_level, true, bool::to_string);
    // Without noise, answers are exact but only the one partition the policy names is
    // answered, unfiltered (`check_query`); with noise, any subset of the group-bys, filtered.
    // Either way something is gained and something lost.
    let dp_both = o.differential_privacy && n.differential_privacy;
    if o.differential_privacy != n.differential_privacy {
        acc.push(
            "aggregation.differential_privacy",
            o.differential_privacy.to_string(),
            n.differential_privacy.to_string(),
            Direction::Both,
        );
    }
    // The privacy parameters count only where both versions add noise; otherwise a change is
    // shown as neutral (the toggle above already says what changed).
    let mut privacy = |path: &str, old: f64, new: f64, more_widens: bool, show: fn(&f64) -> String| {
        let mut sub = Acc::default();
        sub.ordered(path, old, new, more_widens, show);
        for mut c in sub.0 {
            if !dp_both {
                c.direction = Direction::Neutral;
            }
            acc.0.push(c);
        }
    };
    let num = |v: &f64| v.to_string();
    let dur = |v: &f64| duration_words(*v as i64);
    privacy("aggregation.epsilon_per_query", o.epsilon_per_query, n.epsilon_per_query, true, num);
    privacy("aggregation.epsilon_budget", o.epsilon_budget, n.epsilon_budget, true, num);
    privacy("aggregation.delta_per_query", o.delta_per_query, n.delta_per_query, true, num);
    // The budget renews every period: a shorter period spends more epsilon over time.
    privacy("aggregation.budget_period_ms", o.budget_period_ms as f64, n.budget_period_ms as f64, false, dur);
    // More groups per enterprise keep more of its contributions but scale the noise with it:
    // the guarantee per answer stays, the trade-off moves both ways.
    let (og, ng) = (o.max_groups_per_enterprise.max(1), n.max_groups_per_enterprise.max(1));
    if og != ng {
        let dir = if dp_both { Direction::Both } else { Direction::Neutral };
        acc.push("aggregation.max_groups_per_enterprise", og.to_string(), ng.to_string(), dir);
    }
    // Sum bounds clip each enterprise's contribution. With noise, a metric without a bound
    // cannot be summed (adding one widens) and a bound is also the sensitivity (a larger one:
    // less clipping, more noise: both ways). Without noise a bound only clips: a larger or no
    // bound lets more through.
    let bounds = |a: &AggregationRules| -> BTreeMap<String, i64> {
        a.sum_bounds.iter().map(|b| (b.metric.clone(), b.bound)).collect()
    };
    let (ob, nb) = (bounds(o), bounds(n));
    let mut metrics: Vec<&String> = ob.keys().chain(nb.keys()).collect();
    metrics.sort();
    metrics.dedup();
    let words = |b: Option<&i64>| b.map_or_else(|| ABSENT.to_string(), i64::to_string);
    for m in metrics {
        let (x, y) = (ob.get(m), nb.get(m));
        if x == y {
            continue;
        }
        let dir = match (o.differential_privacy, n.differential_privacy) {
            (true, true) => match (x, y) {
                (None, Some(_)) => Direction::Widened,
                (Some(_), None) => Direction::Narrowed,
                _ => Direction::Both,
            },
            (false, false) => {
                let lim = |b: Option<&i64>| b.copied().unwrap_or(i64::MAX);
                if lim(y) > lim(x) { Direction::Widened } else { Direction::Narrowed }
            }
            _ => Direction::Both,
        };
        acc.push(format!("aggregation.sum_bounds.{m}"), words(x), words(y), dir);
    }
}

fn class_words(c: i32) -> String {
    DataClass::try_from(c).map_or_else(|_| format!("class {c}"), |c| class_name(c).to_string())
}

/// What NEW permits that OLD did not, and what it no longer permits, field by field.
pub fn diff_policies(old: &ExchangePolicy, new: &ExchangePolicy) -> PolicyDiff {
    let mut acc = Acc::default();
    let (o, n) = (old, new);
    // Identity and chaining: they permit nothing.
    acc.changed("policy_id", o.policy_id.clone(), n.policy_id.clone(), Direction::Neutral);
    acc.changed("version", o.version.to_string(), n.version.to_string(), Direction::Neutral);
    acc.changed(
        "previous_digest",
        hex::encode(&o.previous_digest),
        hex::encode(&n.previous_digest),
        Direction::Neutral,
    );
    // Another provider or another class is other data altogether.
    acc.changed("provider_zone", o.provider_zone.clone(), n.provider_zone.clone(), Direction::Both);
    acc.changed("data_class", class_words(o.data_class), class_words(n.data_class), Direction::Both);
    acc.set("consumer_zones", &o.consumer_zones, &n.consumer_zones);
    acc.set("purposes", &o.purposes, &n.purposes);
    let (of, nf) = (o.filter.clone().unwrap_or_default(), n.filter.clone().unwrap_or_default());
    acc.filter("filter.record_types", &of.record_types, &nf.record_types, false);
    acc.filter("filter.hs_prefixes", &of.hs_prefixes, &nf.hs_prefixes, true);
    acc.filter("filter.industry_prefixes", &of.industry_prefixes, &nf.industry_prefixes, true);
    field_rules(&mut acc, &o.field_rules, &n.field_rules);
    aggregation(&mut acc, o.aggregation.as_ref(), n.aggregation.as_ref());
    // The consumer keeps the data this long: longer permits more.
    acc.ordered("retention_ms", o.retention_ms, n.retention_ms, true, |v| duration_words(*v));
    acc.set("onward_zones", &o.onward_zones, &n.onward_zones);
    let (or, nr) = (o.rate_limit.unwrap_or_default(), n.rate_limit.unwrap_or_default());
    if (or.max_requests, or.per_ms) != (nr.max_requests, nr.per_ms) {
        // More requests in a window no longer than before permits more; fewer in a window no
        // shorter narrows; otherwise the burst and the long-run rate move apart: both.
        let dir = if nr.max_requests >= or.max_requests && nr.per_ms <= or.per_ms {
            Direction::Widened
        } else if nr.max_requests <= or.max_requests && nr.per_ms >= or.per_ms {
            Direction::Narrowed
        } else {
            Direction::Both
        };
        let words = |r: &ftz_proto::RateLimit| format!("{} requests per {}", r.max_requests, duration_words(r.per_ms));
        acc.push("rate_limit", words(&or), words(&nr), dir);
    }
    // In force from `valid_from` (a later start narrows) until `valid_until` (a later end widens).
    acc.ordered("valid_from_ms", o.valid_from_ms, n.valid_from_ms, false, i64::to_string);
    acc.ordered("valid_until_ms", o.valid_until_ms, n.valid_until_ms, true, i64::to_string);

    let mut d = PolicyDiff::default();
    for c in acc.0 {
        if c.direction.widens() {
            d.widened.push(c.clone());
        }
        if c.direction.narrows() {
            d.narrowed.push(c.clone());
        }
        if c.direction == Direction::Neutral {
            d.neutral.push(c);
        }
    }
    d.is_same = d.widened.is_empty() && d.narrowed.is_empty();
    d.strictly_narrower = d.widened.is_empty() && !d.narrowed.is_empty();
    d
}

#[cfg(test)]
mod tests;
