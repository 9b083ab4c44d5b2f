//! Exchange policies, export negative lists and policy revocations: their structure, the rules
//! for installing them, and the evaluation of a transfer. Deny by default, deterministic, and
//! compiled once at install time so that one evaluation costs microseconds.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use ftz_core::{
    KeyId, Reason, Registry, UnixMillis, ZoneId,
    envelope::{self, EnvelopeError, PayloadType},
    records::{check_id, check_text},
    sha256,
};
use ftz_proto::{DataClass, Envelope, ExchangePolicy, ExportNegativeList, FieldAction, KeyPurpose, PolicyRevocation};
use thiserror::Error;

use crate::{rows, transform::Generalisation};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("must be signed by the authorities of {zones}; missing: {missing}")]
    UnderSigned { zones: String, missing: String },
    #[error("names zone {0}, which registry v{1} does not list")]
    UnknownZone(String, u64),
    #[error("does not involve this zone ({0})")]
    NotForThisZone(String),
    #[error("policy {id} version {installed} is installed; version {offered} is not newer")]
    OlderVersion { id: String, installed: u64, offered: u64 },
    #[error(
        "policy {id} version {offered} does not follow the installed version {installed} (versions go one by one, each naming the digest of the one before)"
    )]
    ChainBroken { id: String, installed: u64, offered: u64 },
    #[error("policy {0} has expired")]
    Expired(String),
    #[error("policy {0} is revoked up to version {1}")]
    Revoked(String, u64),
    #[error("no policy {0} is installed")]
    UnknownPolicy(String),
}

impl PolicyError {
    pub fn reason(&self) -> Reason {
        match self {
            PolicyError::Malformed(_) => Reason::PolicyMalformed,
            PolicyError::Envelope(e) => e.reason(),
            PolicyError::UnderSigned { .. } => Reason::PolicyUnderSigned,
            PolicyError::UnknownZone(..) => Reason::PolicyUnknownZone,
            PolicyError::NotForThisZone(_) => Reason::PolicyNotForThisZone,
            PolicyError::OlderVersion { .. } => Reason::PolicyOlderVersion,
            PolicyError::ChainBroken { .. } => Reason::PolicyChainBroken,
            PolicyError::Expired(_) => Reason::PolicyExpired,
            PolicyError::Revoked(..) => Reason::PolicyRevoked,
            PolicyError::UnknownPolicy(_) => Reason::NoPolicy,
        }
    }
}

fn malformed(m: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(m.into())
}

/// `certification`, `inspection_result`, `industry_data`.
pub fn class_name(c: DataClass) -> &'static str {
    match c {
        DataClass::Certification => "certification",
        DataClass::InspectionResult => "inspection_result",
        DataClass::IndustryData => "industry_data",
        DataClass::Unspecified => "unspecified",
    }
}

pub fn parse_class(s: &str) -> Option<DataClass> {
    [DataClass::Certification, DataClass::InspectionResult, DataClass::IndustryData]
        .into_iter()
        .find(|c| class_name(*c) == s)
}

/// What a field rule does, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldTreatment {
    Keep,
    Drop,
    Pseudonymise,
    Generalise(Generalisation),
}

/// In words, for `policy show` and `policy explain`.
impl std::fmt::Display for FieldTreatment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldTreatment::Keep => write!(f, "kept as it is"),
            FieldTreatment::Drop => write!(f, "dropped"),
            FieldTreatment::Pseudonymise => write!(f, "pseudonymised (a keyed hash per zone pair)"),
            FieldTreatment::Generalise(g) => write!(f, "{g}"),
        }
    }
}

/// A duration in milliseconds as an operator reads it: `30 days`, `1 minute`, `90 seconds`;
/// the largest unit that divides it exactly, so that nothing is rounded away.
pub fn duration_words(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1_000, "second")];
    for (size, name) in UNITS {
        if ms != 0 && ms % size == 0 {
            let n = ms / size;
            return format!("{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    if ms == 0 { "0 seconds".into() } else { format!("{ms} ms") }
}

/// An age (of a status, say) in whole seconds, in words: `0 seconds`, `13 seconds`, `10 minutes`.
pub fn age_words(ms: i64) -> String {
    duration_words(ms.max(0) / 1000 * 1000)
}

/// A list of names, or `any` when empty.
fn names(v: &[String], prefix: bool) -> String {
    if v.is_empty() {
        return "any".into();
    }
    v.iter().map(|s| if prefix { format!("{s}*") } else { s.clone() }).collect::<Vec<_>>().join(", ")
}

/// A policy checked and indexed for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub envelope: Envelope,
    pub doc: ExchangePolicy,
    /// SHA-256 of the payload: what the next version names as its predecessor.
    pub digest: [u8; 32],
    pub provider: ZoneId,
    pub consumers: BTreeSet<ZoneId>,
    pub class: DataClass,
    purposes: HashSet<String>,
    fields: HashMap<String, FieldTreatment>,
    group_by: HashSet<String>,
    sum_bounds: HashMap<String, i64>,
    onward: BTreeSet<ZoneId>,
}

fn check_purpose(p: &str) -> Result<(), PolicyError> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(malformed(format!("purpose {p:?} must be 1-64 characters of [a-z0-9_.-]"))) }
}

fn zone(field: &str, z: &str) -> Result<ZoneId, PolicyError> {
    ZoneId::new(z).map_err(|e| malformed(format!("{field}: {e}")))
}

impl CompiledPolicy {
    pub fn compile(envelope: Envelope) -> Result<Self, PolicyError> {
        let doc: ExchangePolicy =
            envelope::decode_payload(&envelope, PayloadType::EXCHANGE_POLICY).map_err(|e| match e {
                EnvelopeError::MalformedPayload { detail, .. } => {
                    malformed(format!("payload does not decode: {detail}"))
                }
                other => other.into(),
            })?;
        let m = |e: ftz_core::records::RecordError| malformed(e.to_string());
        check_id("policy_id", &doc.policy_id).map_err(m)?;
        if doc.version == 0 {
            return Err(malformed("version must be at least 1"));
        }
        match (doc.version, doc.previous_digest.len()) {
            (1, 0) => {}
            (1, _) => return Err(malformed("version 1 has no previous_digest")),
            (_, 32) => {}
            _ => return Err(malformed("versions after 1 carry the 32-byte SHA-256 of the previous version")),
        }
        let provider = zone("provider_zone", &doc.provider_zone)?;
        if doc.consumer_zones.is_empty() || doc.consumer_zones.len() > 64 {
            return Err(malformed("1 to 64 consumer zones"));
        }
        let mut consumers = BTreeSet::new();
        for c in &doc.consumer_zones {
            let c = zone("consumer_zones", c)?;
            if c == provider || !consumers.insert(c.clone()) {
                return Err(malformed(format!("consumer zone {c} is the provider or listed twice")));
            }
        }
        let class = DataClass::try_from(doc.data_class).ok().filter(|c| *c != DataClass::Unspecified);
        let class =
            class.ok_or_else(|| malformed("data_class must be certification, inspection_result or industry_data"))?;
        if doc.purposes.is_empty() || doc.purposes.len() > 64 {
            return Err(malformed("1 to 64 purposes"));
        }
        for p in &doc.purposes {
            check_purpose(p)?;
        }
        let filter = doc.filter.clone().unwrap_or_default();
        for list in [&filter.record_types, &filter.hs_prefixes, &filter.industry_prefixes] {
            if list.len() > 256 {
                return Err(malformed("at most 256 filter entries per list"));
            }
            for v in list {
                check_text("filter entry", v, 64, true).map_err(m)?;
            }
        }
        let mut fields = HashMap::new();
        for r in &doc.field_rules {
            if class != DataClass::IndustryData {
                return Err(malformed(
                    "field rules apply to industry data; records travel whole under their issuer's signature",
                ));
            }
            if !rows::is_field(&r.field) {
                return Err(malformed(format!("field rule for unknown field {:?}", r.field)));
            }
            let t = match FieldAction::try_from(r.action) {
                Ok(FieldAction::Keep) => FieldTreatment::Keep,
                Ok(FieldAction::Drop) => FieldTreatment::Drop,
                Ok(FieldAction::Pseudonymise) => FieldTreatment::Pseudonymise,
                Ok(FieldAction::Generalise) => {
                    FieldTreatment::Generalise(Generalisation::parse(&r.field, &r.parameter).map_err(malformed)?)
                }
                _ => {
                    return Err(malformed(format!(
                        "field {}: action must be KEEP, DROP, PSEUDONYMISE or GENERALISE",
                        r.field
                    )));
                }
            };
            if fields.insert(r.field.clone(), t).is_some() {
                return Err(malformed(format!("field {} has two rules", r.field)));
            }
        }
        let agg = doc.aggregation.clone().unwrap_or_default();
        let mut group_by = HashSet::new();
        let mut sum_bounds = HashMap::new();
        if doc.aggregation.is_some() {
            if class != DataClass::IndustryData {
                return Err(malformed("aggregation rules apply to industry data"));
            }
            if agg.min_group_size < 2 {
                return Err(malformed("aggregation.min_group_size must be at least 2"));
            }
            for g in &agg.group_by {
                match fields.get(g) {
                    Some(FieldTreatment::Keep | FieldTreatment::Generalise(_)) => {}
                    _ => return Err(malformed(format!("group_by {g:?} needs a KEEP or GENERALISE field rule"))),
                }
                group_by.insert(g.clone());
            }
            for b in &agg.sum_bounds {
                if !rows::is_metric(&b.metric) || b.bound < 1 {
                    return Err(malformed(format!("sum bound {:?}: a metric and a bound of at least 1", b.metric)));
                }
                sum_bounds.insert(b.metric.clone(), b.bound);
            }
            if agg.differential_privacy {
                let ok = agg.epsilon_per_query >= 0.001
                    && agg.epsilon_per_query <= agg.epsilon_budget
                    && agg.epsilon_budget <= 1000.0
                    && agg.budget_period_ms >= 60_000
                    && agg.delta_per_query > 0.0
                    && agg.delta_per_query <= 0.001;
                if !ok {
                    return Err(malformed(
                        "differential privacy needs 0.001 <= epsilon_per_query <= epsilon_budget <= 1000, 0 < delta_per_query <= 0.001 and a budget period of at least a minute",
                    ));
                }
            }
        }
        if doc.retention_ms < 1 || doc.retention_ms > 10 * 366 * 86_400_000 {
            return Err(malformed("retention_ms must be between 1 ms and 10 years"));
        }
        let mut onward = BTreeSet::new();
        for z in &doc.onward_zones {
            let z = zone("onward_zones", z)?;
            if z == provider || consumers.contains(&z) {
                return Err(malformed(format!("onward zone {z} is already a party")));
            }
            onward.insert(z);
        }
        let rate = doc.rate_limit.unwrap_or_default();
        if rate.max_requests < 1 || rate.per_ms < 1000 {
            return Err(malformed("rate_limit needs at least 1 request per at least 1000 ms"));
        }
        if doc.valid_from_ms >= doc.valid_until_ms {
            return Err(malformed("valid_from must be before valid_until"));
        }
        let digest = sha256(&envelope.payload);
        Ok(Self {
            purposes: doc.purposes.iter().cloned().collect(),
            envelope,
            digest,
            provider,
            consumers,
            class,
            fields,
            group_by,
            sum_bounds,
            onward,
            doc,
        })
    }

    pub fn id(&self) -> &str {
        &self.doc.policy_id
    }

    pub fn version(&self) -> u64 {
        self.doc.version
    }

    pub fn in_force_at(&self, t: UnixMillis) -> bool {
        t >= self.doc.valid_from_ms && t < self.doc.valid_until_ms
    }

    /// The treatment of a field; `None`: no rule, so the field never leaves.
    pub fn field(&self, f: &str) -> Option<FieldTreatment> {
        self.fields.get(f).copied()
    }

    pub fn may_group_by(&self, f: &str) -> bool {
        self.group_by.contains(f)
    }

    pub fn sum_bound(&self, metric: &str) -> Option<i64> {
        self.sum_bounds.get(metric).copied()
    }

    pub fn aggregation(&self) -> ftz_proto::AggregationRules {
        self.doc.aggregation.clone().unwrap_or_default()
    }

    pub fn rate(&self) -> (u32, i64) {
        let r = self.doc.rate_limit.unwrap_or_default();
        (r.max_requests, r.per_ms)
    }

    /// Whether the policy's filter admits data described by `subject`.
    pub fn admits(&self, subject: &Subject<'_>) -> bool {
        let f = self.doc.filter.clone().unwrap_or_default();
        // `None`: the request is not about one item (a query over a dataset), whose items are
        // filtered one by one instead.
        let any = |list: &[String], v: Option<&str>, prefix: bool| match v {
            None => true,
            Some(v) => list.is_empty() || list.iter().any(|x| if prefix { v.starts_with(x.as_str()) } else { v == x }),
        };
        any(&f.record_types, subject.record_type, false)
            && any(&f.hs_prefixes, subject.hs_code, true)
            && any(&f.industry_prefixes, subject.industry_code, true)
    }

    /// The clauses, each marked by who enforces it.
    pub fn clauses(&self) -> Vec<String> {
        let d = &self.doc;
        let mut c = vec![
            format!("[provider-enforced] consumers: {}", d.consumer_zones.join(", ")),
            format!("[provider-enforced] purposes: {}", d.purposes.join(", ")),
        ];
        let f = d.filter.clone().unwrap_or_default();
        if !(f.record_types.is_empty() && f.hs_prefixes.is_empty() && f.industry_prefixes.is_empty()) {
            let mut parts = Vec::new();
            if !f.record_types.is_empty() {
                parts.push(format!("certification types {}", names(&f.record_types, false)));
            }
            if !f.hs_prefixes.is_empty() {
                parts.push(format!("HS codes {}", names(&f.hs_prefixes, true)));
            }
            if !f.industry_prefixes.is_empty() {
                parts.push(format!("industry codes {}", names(&f.industry_prefixes, true)));
            }
            c.push(format!("[provider-enforced] filter: {}", parts.join("; ")));
        }
        for r in &d.field_rules {
            let how = match self.field(&r.field) {
                Some(t) => t.to_string(),
                None => FieldAction::try_from(r.action)
                    .map(|a| a.as_str_name().trim_start_matches("FIELD_ACTION_").to_lowercase())
                    .unwrap_or_else(|_| "?".into()),
            };
            c.push(format!("[provider-enforced] field {}: {how}", r.field));
        }
        if let Some(a) = &d.aggregation {
            c.push(format!(
                "[provider-enforced] aggregates: group by {}, groups under {} suppressed{}{}",
                names(&a.group_by, false),
                a.min_group_size,
                if a.differential_privacy {
                    format!(
                        ", groups released by noisy threshold (delta {}) and discrete Laplace noise, epsilon {} per query, {} per {}",
                        a.delta_per_query,
                        a.epsilon_per_query,
                        a.epsilon_budget,
                        duration_words(a.budget_period_ms)
                    )
                } else {
                    String::new()
                },
                if a.row_level { ", row-level export allowed" } else { "" }
            ));
        }
        let (n, per) = self.rate();
        c.push(format!("[provider-enforced] rate: {n} requests per {} per consumer", duration_words(per)));
        c.push(format!(
            "[consumer-promised, enforced by its node] delete received data after {}",
            duration_words(d.retention_ms)
        ));
        c.push(if d.onward_zones.is_empty() {
            "[consumer-promised, enforced by its node] no onward transfer".to_string()
        } else {
            format!("[consumer-promised, enforced by its node] onward transfer only to {}", d.onward_zones.join(", "))
        });
        c
    }
}

/// What the data is, for filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub record_type: Option<&'a str>,
    pub hs_code: Option<&'a str>,
    pub industry_code: Option<&'a str>,
}

/// Checks `authority keys valid now` of `zones` signed `env`; returns the signers.
fn check_signed_by(
    env: &Envelope,
    payload_type: &str,
    registry: &Registry,
    zones: &[&ZoneId],
    now: UnixMillis,
) -> Result<Vec<KeyId>, PolicyError> {
    let authority =
        |z: &ZoneId, id: &KeyId| registry.zone(z).and_then(|zone| zone.key_valid_at(KeyPurpose::Authority, id, now));
    let signers =
        envelope::verify(env, payload_type, |id| zones.iter().find_map(|z| authority(z, id))).or_else(|e| match e {
            EnvelopeError::NoTrustedSignature | EnvelopeError::Unsigned => Ok(Vec::new()),
            other => Err(other),
        })?;
    let missing: Vec<String> = zones
        .iter()
        .filter(|z| !signers.iter().any(|id| authority(z, id).is_some()))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        Ok(signers)
    } else {
        Err(PolicyError::UnderSigned {
            zones: zones.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            missing: missing.join(", "),
        })
    }
}

/// The outcome of an install check.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallOutcome {
    Install,
    AlreadyInstalled,
}

/// May `candidate` be installed on the node of `own` holding `installed` (the same id's
/// current version)? Every zone in the registry, `own` a party, signed by the provider's and
/// every consumer's authority, not expired, not revoked, and versions one by one with the
/// digest of the one before.
pub fn check_policy_install(
    candidate: &CompiledPolicy,
    registry: &Registry,
    own: &ZoneId,
    installed: Option<&CompiledPolicy>,
    revoked_up_to: Option<u64>,
    now: UnixMillis,
) -> Result<InstallOutcome, PolicyError> {
    let parties: Vec<&ZoneId> = std::iter::once(&candidate.provider).chain(candidate.consumers.iter()).collect();
    for z in parties.iter().copied().chain(candidate.onward.iter()) {
        if registry.zone(z).is_none() {
            return Err(PolicyError::UnknownZone(z.to_string(), registry.version()));
        }
    }
    // Onward zones install it too, to learn the terms they receive data under; only the
    // parties sign it.
    if !parties.contains(&own) && !candidate.onward.contains(own) {
        return Err(PolicyError::NotForThisZone(own.to_string()));
    }
    if let Some(old) = installed {
        if old.envelope == candidate.envelope {
            return Ok(InstallOutcome::AlreadyInstalled);
        }
        if candidate.version() <= old.version() {
            return Err(PolicyError::OlderVersion {
                id: candidate.id().into(),
                installed: old.version(),
                offered: candidate.version(),
            });
        }
        if candidate.version() != old.version() + 1 || candidate.doc.previous_digest != old.digest {
            return Err(PolicyError::ChainBroken {
                id: candidate.id().into(),
                installed: old.version(),
                offered: candidate.version(),
            });
        }
    }
    if let Some(v) = revoked_up_to.filter(|v| candidate.version() <= *v) {
        return Err(PolicyError::Revoked(candidate.id().into(), v));
    }
    if now >= candidate.doc.valid_until_ms {
        return Err(PolicyError::Expired(candidate.id().into()));
    }
    check_signed_by(&candidate.envelope, PayloadType::EXCHANGE_POLICY, registry, &parties, now)?;
    Ok(InstallOutcome::Install)
}

/// Checks a revocation of `policy`: signed by the authority of the zone it names, which must
/// be a party to the policy. Returns the revocation.
pub fn check_revocation(
    env: &Envelope,
    policy: &CompiledPolicy,
    registry: &Registry,
    now: UnixMillis,
) -> Result<PolicyRevocation, PolicyError> {
    let rev: PolicyRevocation = envelope::decode_payload(env, PayloadType::POLICY_REVOCATION)?;
    if rev.policy_id != policy.id() {
        return Err(malformed(format!("revocation is for policy {:?}", rev.policy_id)));
    }
    let by = zone("revoked_by_zone", &rev.revoked_by_zone)?;
    if by != policy.provider && !policy.consumers.contains(&by) {
        return Err(malformed(format!("zone {by} is not a party to policy {}", policy.id())));
    }
    check_text("reason", &rev.reason, 512, true).map_err(|e| malformed(e.to_string()))?;
    check_signed_by(env, PayloadType::POLICY_REVOCATION, registry, &[&by], now)?;
    Ok(rev)
}

/// A zone's export negative list, checked.
#[derive(Debug, Clone, Default)]
pub struct NegativeList {
    pub envelope: Option<Envelope>,
    pub version: u64,
    pub classes: HashSet<i32>,
    pub fields: HashSet<String>,
}

/// Checks a negative list for `own`: its zone, signed by the zone's authority, newer.
pub fn check_negative_list(
    env: &Envelope,
    registry: &Registry,
    own: &ZoneId,
    installed_version: u64,
    now: UnixMillis,
) -> Result<Option<NegativeList>, PolicyError> {
    let doc: ExportNegativeList = envelope::decode_payload(env, PayloadType::EXPORT_NEGATIVE_LIST)?;
    if doc.zone_id != own.as_str() {
        return Err(PolicyError::NotForThisZone(own.to_string()));
    }
    if doc.version == installed_version {
        return Ok(None);
    }
    if doc.version < installed_version {
        return Err(PolicyError::OlderVersion {
            id: "negative list".into(),
            installed: installed_version,
            offered: doc.version,
        });
    }
    for f in &doc.fields {
        if !rows::is_field(f) {
            return Err(malformed(format!("negative list names unknown field {f:?}")));
        }
    }
    check_signed_by(env, PayloadType::EXPORT_NEGATIVE_LIST, registry, &[own], now)?;
    Ok(Some(NegativeList {
        envelope: Some(env.clone()),
        version: doc.version,
        classes: doc.data_classes.iter().copied().collect(),
        fields: doc.fields.iter().cloned().collect(),
    }))
}

/// Reads an installed negative list (its signature was checked when it was installed).
pub fn decode_negative_list(env: &Envelope) -> Result<NegativeList, PolicyError> {
    let doc: ExportNegativeList = envelope::decode_payload(env, PayloadType::EXPORT_NEGATIVE_LIST)?;
    Ok(NegativeList {
        envelope: Some(env.clone()),
        version: doc.version,
        classes: doc.data_classes.iter().copied().collect(),
        fields: doc.fields.iter().cloned().collect(),
    })
}

/// A transfer to decide.
#[derive(Debug, Clone, Copy)]
pub struct TransferRequest<'a> {
    /// The zone the data comes from (its owner).
    pub provider: &'a ZoneId,
    /// The zone the owner's policy names as consumer.
    pub consumer: &'a ZoneId,
    pub class: DataClass,
    pub subject: Subject<'a>,
    pub purpose: &'a str,
    /// Fields asked for by name (industry data).
    pub fields: &'a [&'a str],
    /// Set when `consumer` passes the data on to this zone.
    pub onward_to: Option<&'a ZoneId>,
    pub now: UnixMillis,
}

/// Requests and epsilon used so far, which the node keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Requests under this policy from this consumer within the rate window.
    pub requests_in_window: u32,
    /// Milli-epsilon already charged in this budget period; and what this request would charge.
    pub epsilon_spent_milli: u64,
    pub epsilon_needed_milli: u64,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Allow { policy: Arc<CompiledPolicy>, steps: Vec<String> },
    Deny { reason: Reason, policy: Option<(String, u64)>, detail: String, steps: Vec<String> },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn steps(&self) -> &[String] {
        match self {
            Decision::Allow { steps, .. } | Decision::Deny { steps, .. } => steps,
        }
    }
}

/// Every installed policy (latest version per id), revocations and negative lists.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: BTreeMap<String, Arc<CompiledPolicy>>,
    revoked: HashMap<String, u64>,
    negative: HashMap<ZoneId, NegativeList>,
}

impl PolicySet {
    pub fn insert(&mut self, p: CompiledPolicy) {
        self.policies.insert(p.id().to_string(), Arc::new(p));
    }

    pub fn revoke(&mut self, id: &str, up_to: u64) {
        let e = self.revoked.entry(id.to_string()).or_insert(0);
        *e = (*e).max(up_to);
    }

    pub fn set_negative_list(&mut self, zone: ZoneId, list: NegativeList) {
        self.negative.insert(zone, list);
    }

    pub fn negative_list(&self, zone: &ZoneId) -> Option<&NegativeList> {
        self.negative.get(zone)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<CompiledPolicy>> {
        self.policies.get(id)
    }

    pub fn revoked_up_to(&self, id: &str) -> Option<u64> {
        self.revoked.get(id).copied()
    }

    /// Whether `zone` may hold data received under `p` (a consumer, or an onward zone).
    pub fn may_hold(p: &CompiledPolicy, zone: &ZoneId) -> bool {
        p.consumers.contains(zone) || p.onward.contains(zone)
    }

    pub fn is_revoked(&self, p: &CompiledPolicy) -> bool {
        self.revoked.get(p.id()).is_some_and(|v| p.version() <= *v)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<CompiledPolicy>> {
        self.policies.values()
    }

    /// Decides a transfer. Checks, in order: the provider's negative list; policies from the
    /// provider to the consumer for the class; their filter; revocation; validity; purpose;
    /// onward transfer; fields; rate; epsilon budget. The first policy (by id) that passes every
    /// check allows; otherwise the refusal is the one of the policy that got furthest.
    pub fn evaluate(&self, req: &TransferRequest<'_>, usage: impl Fn(&CompiledPolicy) -> Usage) -> Decision {
        let mut steps = Vec::new();
        let deny = |reason, policy: Option<&CompiledPolicy>, detail: String, mut steps: Vec<String>| {
            steps.push(format!("deny: {reason}: {detail}"));
            Decision::Deny { reason, policy: policy.map(|p| (p.id().to_string(), p.version())), detail, steps }
        };
        if let Some(neg) = self.negative.get(req.provider) {
            if neg.classes.contains(&(req.class as i32)) {
                let d = format!(
                    "{}'s export negative list v{} names the class {}",
                    req.provider,
                    neg.version,
                    class_name(req.class)
                );
                return deny(Reason::NegativeList, None, d, steps);
            }
            if let Some(f) = req.fields.iter().find(|f| neg.fields.contains(**f)) {
                let d = format!("{}'s export negative list v{} names the field {f}", req.provider, neg.version);
                return deny(Reason::NegativeList, None, d, steps);
            }
            steps.push(format!("{}'s negative list v{} does not forbid this", req.provider, neg.version));
        } else {
            steps.push(format!("{} has no export negative list", req.provider));
        }

        let candidates: Vec<&Arc<CompiledPolicy>> = self
            .policies
            .values()
            .filter(|p| p.provider == *req.provider && p.consumers.contains(req.consumer) && p.class == req.class)
            .collect();
        if candidates.is_empty() {
            let d =
                format!("no policy lets {} data go from {} to {}", class_name(req.class), req.provider, req.consumer);
            return deny(Reason::NoPolicy, None, d, steps);
        }
        let mut best: Option<(usize, Reason, &CompiledPolicy, String)> = None;
        for p in candidates {
            let (stage, outcome) = self.check_one(p, req, &usage);
            match outcome {
                Ok(note) => {
                    steps.push(format!("policy {} v{}: {note}", p.id(), p.version()));
                    steps.push(format!("allow under policy {} v{}", p.id(), p.version()));
                    return Decision::Allow { policy: p.clone(), steps };
                }
                Err((reason, detail)) => {
                    steps.push(format!("policy {} v{}: {reason}: {detail}", p.id(), p.version()));
                    if best.as_ref().is_none_or(|b| stage > b.0) {
                        best = Some((stage, reason, p, detail));
                    }
                }
            }
        }
        match best {
            Some((_, reason, p, detail)) => deny(reason, Some(p), detail, steps),
            None => deny(Reason::NoPolicy, None, "no policy applies".into(), steps),
        }
    }

    /// One policy's checks: how far it got, and allow (with a note) or deny.
    fn check_one(
        &self,
        p: &CompiledPolicy,
        req: &TransferRequest<'_>,
        usage: &impl Fn(&CompiledPolicy) -> Usage,
    ) -> (usize, Result<String, (Reason, String)>) {
        if !p.admits(&req.subject) {
            return (1, Err((Reason::NoPolicy, "its filter does not admit this data".into())));
        }
        if self.is_revoked(p) {
            return (2, Err((Reason::PolicyRevoked, "revoked by a party".into())));
        }
        if !p.in_force_at(req.now) {
            let d = if req.now < p.doc.valid_from_ms { "not yet in force" } else { "expired" };
            return (3, Err((Reason::PolicyExpired, d.into())));
        }
        if !p.purposes.contains(req.purpose) {
            return (
                4,
                Err((
                    Reason::PurposeNotAllowed,
                    format!("purpose {:?} is not one of {}", req.purpose, p.doc.purposes.join(", ")),
                )),
            );
        }
        if let Some(to) = req.onward_to
            && !p.onward.contains(to)
        {
            return (
                5,
                Err((
                    Reason::OnwardTransfer,
                    format!("{} may not pass {} data on to {to}", req.consumer, req.provider),
                )),
            );
        }
        if let Some(f) = req.fields.iter().find(|f| !matches!(p.field(f), Some(t) if t != FieldTreatment::Drop)) {
            return (6, Err((Reason::FieldNotAllowed, format!("field {f} does not leave under this policy"))));
        }
        let u = usage(p);
        let (max, per) = p.rate();
        if u.requests_in_window >= max {
            return (7, Err((Reason::RateLimited, format!("{max} requests per {} already made", duration_words(per)))));
        }
        let agg = p.aggregation();
        if u.epsilon_needed_milli > 0 {
            let budget = (agg.epsilon_budget * 1000.0).round() as u64;
            if u.epsilon_spent_milli + u.epsilon_needed_milli > budget {
                return (
                    8,
                    Err((
                        Reason::BudgetExhausted,
                        format!(
                            "epsilon {:.3} of {:.3} spent in the last {} days; this query needs {:.3}",
                            u.epsilon_spent_milli as f64 / 1000.0,
                            agg.epsilon_budget,
                            agg.budget_period_ms as f64 / 86_400_000.0,
                            u.epsilon_needed_milli as f64 / 1000.0
                        ),
                    )),
                );
            }
        }
        (9, Ok(format!("admits the data, in force, purpose {:?} allowed", req.purpose)))
    }
}

impl ftz_core::Refusal for PolicyError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}

#[cfg(test)]
pub(crate) mod tests;
