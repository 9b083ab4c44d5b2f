//! `ftzctl policy` and `ftzctl negative-list`: exchange policies as the authorities write and
//! sign them (offline), and as each zone's admin installs, lists, revokes and explains them.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use ftz_core::{
    Clock, SystemClock,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_policy::exchange::{CompiledPolicy, class_name, parse_class};
use ftz_proto::{
    AggregationRules, ExchangePolicy, ExplainPolicyRequest, ExportNegativeList, FieldAction, FieldRule,
    InstallNegativeListRequest, InstallPolicyRequest, ListPoliciesRequest, MetricBound, PolicyFilter, PolicyRevocation,
    RateLimit, RevokePolicyRequest, admin_client::AdminClient,
};
use ftzctl::output::{Format, emit, time};
use serde::Deserialize;
use serde_json::json;
use tonic::transport::Channel;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write an unsigned policy from a TOML spec (see docs/policies.md); the provider's and
    /// every consumer's authority then sign it.
    New {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add (or replace) your authority's signature to a policy file.
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Describe a policy file, clause by clause.
    Show { file: PathBuf },
    /// Install a signed policy on your node (role admin).
    Install { file: PathBuf },
    /// The policies installed on your node (role admin).
    List,
    /// Withdraw a policy at once: signs a revocation with your authority's key, installs it on
    /// your node, which forwards it to the other zones the policy names (role admin).
    Revoke(RevokeArgs),
    /// Which policy and rules decide a transfer, and why allow or deny (role admin).
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[arg(long)]
    id: String,
    /// Revoke every version up to this one.
    #[arg(long)]
    version: u64,
    /// Your zone (a party to the policy).
    #[arg(long)]
    zone: String,
    #[arg(long)]
    reason: String,
    /// Your zone authority's key.
    #[arg(long)]
    key: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// certification, inspection_result or industry_data.
    #[arg(long)]
    class: String,
    #[arg(long)]
    purpose: String,
    #[arg(long, default_value = "")]
    field: String,
}

#[derive(Debug, Subcommand)]
pub enum NegativeListCommand {
    /// Write and sign your zone's export negative list.
    Create {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        version: u64,
        /// Data classes that never leave (comma-separated).
        #[arg(long, value_delimiter = ',')]
        classes: Vec<String>,
        /// Fields that never leave (comma-separated).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Your zone authority's key.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Install it on your node (role admin).
    Install { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum UserRevocationsCommand {
    /// Write and sign your zone's list of withdrawn user certificates (every certificate still
    /// withdrawn: each version replaces the one before).
    Create {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        version: u64,
        /// The withdrawn certificates (PEM files).
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<PathBuf>,
        /// Your zone authority's key.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Install it on your node (role admin): calls with a listed certificate are refused at once.
    Install { file: PathBuf },
}

pub async fn run_user_revocations(
    cmd: UserRevocationsCommand,
    channel: impl FnOnce() -> Result<Channel>,
    fmt: Format,
) -> Result<()> {
    match cmd {
        UserRevocationsCommand::Create { zone, version, certs, key, out } => {
            let mut digests = Vec::new();
            for c in &certs {
                let chain = ftz_pki::files::read_cert_chain(c)?;
                let leaf = chain.first().ok_or_else(|| anyhow!("{} holds no certificate", c.display()))?;
                digests.push(ftz_core::sha256(leaf).to_vec());
            }
            let doc = ftz_proto::UserCertificateRevocations {
                zone_id: zone,
                version,
                certificate_digests: digests,
                issued_at_ms: SystemClock.now_ms(),
            };
            let key = ftz_pki::files::read_signing_key(&key)?;
            let env = envelope::seal(PayloadType::USER_CERTIFICATE_REVOCATIONS, &doc, &[&key]);
            write(&out, &env)?;
            emit(
                fmt,
                || {
                    format!(
                        "wrote v{} of {}'s withdrawn user certificates ({}) to {}, signed by {}\n",
                        doc.version,
                        doc.zone_id,
                        doc.certificate_digests.len(),
                        out.display(),
                        key.key_id()
                    )
                },
                || json!({"file": out, "zone_id": doc.zone_id, "version": doc.version, "certificates": doc.certificate_digests.len()}),
            );
        }
        UserRevocationsCommand::Install { file } => {
            let env = read(&file)?;
            let r = AdminClient::new(channel()?)
                .install_user_revocations(ftz_proto::InstallUserRevocationsRequest { revocations: Some(env) })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    if r.already_installed {
                        format!("withdrawn user certificates v{} were already installed\n", r.version)
                    } else {
                        format!("installed v{}: {} user certificate(s) withdrawn\n", r.version, r.certificates)
                    }
                },
                || json!({"version": r.version, "already_installed": r.already_installed, "certificates": r.certificates}),
            );
        }
    }
    Ok(())
}

/// The TOML a policy is written in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    policy_id: String,
    #[serde(default = "one")]
    version: u64,
    /// The previous version's file (its digest is chained in); needed after version 1.
    previous: Option<PathBuf>,
    provider: String,
    consumers: Vec<String>,
    data_class: String,
    purposes: Vec<String>,
    retention_days: i64,
    #[serde(default)]
    onward_zones: Vec<String>,
    rate: Rate,
    #[serde(default = "year")]
    valid_days: i64,
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    field: Vec<Field>,
    aggregation: Option<Aggregation>,
}

fn one() -> u64 {
    1
}

fn year() -> i64 {
    365
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rate {
    max_requests: u32,
    per_seconds: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    record_types: Vec<String>,
    #[serde(default)]
    hs_prefixes: Vec<String>,
    #[serde(default)]
    industry_prefixes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Field {
    name: String,
    /// keep, drop, pseudonymise, generalise
    action: String,
    #[serde(default)]
    parameter: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Aggregation {
    #[serde(default)]
    group_by: Vec<String>,
    min_group_size: u32,
    #[serde(default)]
    differential_privacy: bool,
    #[serde(default)]
    epsilon_per_query: f64,
    #[serde(default)]
    epsilon_budget: f64,
    #[serde(default)]
    budget_period_days: i64,
    #[serde(default)]
    sum_bounds: BTreeMap<String, i64>,
    #[serde(default)]
    row_level: bool,
    #[serde(default)]
    max_groups_per_enterprise: u32,
    #[serde(default)]
    delta_per_query: f64,
}

use ftzctl::signed_file::{read, write};

fn action(a: &str) -> Result<FieldAction> {
    Ok(match a {
        "keep" => FieldAction::Keep,
        "drop" => FieldAction::Drop,
        "pseudonymise" | "pseudonymize" => FieldAction::Pseudonymise,
        "generalise" | "generalize" => FieldAction::Generalise,
        other => bail!("field action {other:?} is not keep, drop, pseudonymise or generalise"),
    })
}

fn from_spec(spec: Spec, now: i64) -> Result<ExchangePolicy> {
    let class = parse_class(&spec.data_class).ok_or_else(|| {
        anyhow!("data_class {:?} is not certification, inspection_result or industry_data", spec.data_class)
    })?;
    let previous_digest = match &spec.previous {
        Some(p) => sha256(&read(p)?.payload).to_vec(),
        None => Vec::new(),
    };
    let field_rules = spec
        .field
        .iter()
        .map(|f| {
            Ok(FieldRule { field: f.name.clone(), action: action(&f.action)? as i32, parameter: f.parameter.clone() })
        })
        .collect::<Result<Vec<_>>>()?;
    let aggregation = spec.aggregation.map(|a| AggregationRules {
        group_by: a.group_by,
        min_group_size: a.min_group_size,
        differential_privacy: a.differential_privacy,
        epsilon_per_query: a.epsilon_per_query,
        epsilon_budget: a.epsilon_budget,
        budget_period_ms: a.budget_period_days * DAY_MS,
        sum_bounds: a.sum_bounds.into_iter().map(|(metric, bound)| MetricBound { metric, bound }).collect(),
        row_level: a.row_level,
        max_groups_per_enterprise: a.max_groups_per_enterprise,
        delta_per_query: a.delta_per_query,
    });
    Ok(ExchangePolicy {
        policy_id: spec.policy_id,
        version: spec.version,
        previous_digest,
        provider_zone: spec.provider,
        consumer_zones: spec.consumers,
        data_class: class as i32,
        filter: Some(PolicyFilter {
            record_types: spec.filter.record_types,
            hs_prefixes: spec.filter.hs_prefixes,
            industry_prefixes: spec.filter.industry_prefixes,
        }),
        purposes: spec.purposes,
        field_rules,
        aggregation,
        retention_ms: spec.retention_days * DAY_MS,
        onward_zones: spec.onward_zones,
        rate_limit: Some(RateLimit { max_requests: spec.rate.max_requests, per_ms: spec.rate.per_seconds * 1000 }),
        valid_from_ms: now,
        valid_until_ms: now + spec.valid_days * DAY_MS,
    })
}

fn describe(p: &CompiledPolicy) -> (String, serde_json::Value) {
    let signers: Vec<String> = p.envelope.signatures.iter().map(|s| hex::encode(&s.key_id)).collect();
    let mut t = format!(
        "policy {} v{}: {} data from {} to {}\nvalid {} .. {}\ndigest {}\n",
        p.id(),
        p.version(),
        class_name(p.class),
        p.provider,
        p.doc.consumer_zones.join(", "),
        time(p.doc.valid_from_ms),
        time(p.doc.valid_until_ms),
        hex::encode(p.digest)
    );
    for c in p.clauses() {
        t.push_str(&format!("  {c}\n"));
    }
    t.push_str(&format!("signatures: {} ({})\n", signers.len(), signers.join(", ")));
    let v = json!({
        "policy_id": p.id(), "version": p.version(), "provider_zone": p.provider.as_str(),
        "consumer_zones": p.doc.consumer_zones, "data_class": class_name(p.class), "purposes": p.doc.purposes,
        "valid_from_ms": p.doc.valid_from_ms, "valid_until_ms": p.doc.valid_until_ms, "digest": hex::encode(p.digest),
        "clauses": p.clauses(), "signatures": signers,
    });
    (t, v)
}

pub async fn run(cmd: PolicyCommand, channel: impl FnOnce() -> Result<Channel>, fmt: Format) -> Result<()> {
    match cmd {
        PolicyCommand::New { spec, out } => {
            if out.exists() {
                bail!("{} exists; choose a new file", out.display());
            }
            let text = std::fs::read_to_string(&spec).with_context(|| format!("cannot read {}", spec.display()))?;
            let parsed: Spec =
                toml::from_str(&text).with_context(|| format!("{} is not a valid policy spec", spec.display()))?;
            let doc = from_spec(parsed, SystemClock.now_ms())?;
            let env = envelope::seal(PayloadType::EXCHANGE_POLICY, &doc, &[]);
            let compiled = CompiledPolicy::compile(env.clone())?;
            write(&out, &env)?;
            let (text, value) = describe(&compiled);
            emit(fmt, || format!("wrote unsigned {}\n{text}", out.display()), || value);
        }
        PolicyCommand::Sign { file, key } => {
            ftzctl::signed_file::sign(
                &file,
                &key,
                None,
                |env| Ok(CompiledPolicy::compile(env.clone()).map(|_| ())?),
                fmt,
            )?;
        }
        PolicyCommand::Show { file } => {
            let (text, value) = describe(&CompiledPolicy::compile(read(&file)?)?);
            emit(fmt, || text, || value);
        }
        PolicyCommand::Install { file } => {
            let env = read(&file)?;
            let r = AdminClient::new(channel()?)
                .install_policy(InstallPolicyRequest { policy: Some(env) })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    if r.already_installed {
                        format!("policy {} v{} was already installed; nothing changed\n", r.policy_id, r.version)
                    } else {
                        format!("installed policy {} v{}\n", r.policy_id, r.version)
                    }
                },
                || json!({"policy_id": r.policy_id, "version": r.version, "already_installed": r.already_installed}),
            );
        }
        PolicyCommand::List => {
            let list = AdminClient::new(channel()?).list_policies(ListPoliciesRequest {}).await?.into_inner().policies;
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for p in &list {
                        t.push_str(&format!(
                            "{} v{}{}  {} from {} to {}  purposes {}  valid until {}\n",
                            p.policy_id,
                            p.version,
                            if p.revoked { " (REVOKED)" } else { "" },
                            p.data_class,
                            p.provider_zone,
                            p.consumer_zones.join(", "),
                            p.purposes.join(", "),
                            time(p.valid_until_ms)
                        ));
                        for c in &p.clauses {
                            t.push_str(&format!("    {c}\n"));
                        }
                    }
                    if list.is_empty() {
                        t.push_str("no policies installed: nothing leaves this zone\n");
                    }
                    t
                },
                || {
                    json!(list.iter().map(|p| json!({
                    "policy_id": p.policy_id, "version": p.version, "revoked": p.revoked, "data_class": p.data_class,
                    "provider_zone": p.provider_zone, "consumer_zones": p.consumer_zones, "purposes": p.purposes,
                    "valid_until_ms": p.valid_until_ms, "clauses": p.clauses,
                })).collect::<Vec<_>>())
                },
            );
        }
        PolicyCommand::Revoke(a) => {
            let key = ftz_pki::files::read_signing_key(&a.key)?;
            let rev = PolicyRevocation {
                policy_id: a.id.clone(),
                version: a.version,
                revoked_by_zone: a.zone,
                reason: a.reason,
                revoked_at_ms: SystemClock.now_ms(),
            };
            let env = envelope::seal(PayloadType::POLICY_REVOCATION, &rev, &[&key]);
            let r = AdminClient::new(channel()?)
                .revoke_policy(RevokePolicyRequest { revocation: Some(env) })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    format!(
                        "policy {} revoked up to v{}{}; told: {}; still to tell: {}\n",
                        a.id,
                        a.version,
                        if r.already_revoked { " (already)" } else { "" },
                        if r.notified_zones.is_empty() { "none".into() } else { r.notified_zones.join(", ") },
                        if r.pending_zones.is_empty() { "none".into() } else { r.pending_zones.join(", ") }
                    )
                },
                || json!({"policy_id": a.id, "already_revoked": r.already_revoked, "notified_zones": r.notified_zones, "pending_zones": r.pending_zones}),
            );
        }
        PolicyCommand::Explain(a) => {
            let r = AdminClient::new(channel()?)
                .explain_policy(ExplainPolicyRequest {
                    provider_zone: a.from,
                    consumer_zone: a.to,
                    data_class: a.class,
                    purpose: a.purpose,
                    field: a.field,
                })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    let mut t = if r.allowed {
                        format!("ALLOW under policy {} v{}\n", r.policy_id, r.policy_version)
                    } else {
                        format!("DENY: {}\n", r.reason)
                    };
                    for s in &r.steps {
                        t.push_str(&format!("  {s}\n"));
                    }
                    t
                },
                || json!({"allowed": r.allowed, "reason": r.reason, "policy_id": r.policy_id, "policy_version": r.policy_version, "steps": r.steps}),
            );
        }
    }
    Ok(())
}

pub async fn run_negative_list(
    cmd: NegativeListCommand,
    channel: impl FnOnce() -> Result<Channel>,
    fmt: Format,
) -> Result<()> {
    match cmd {
        NegativeListCommand::Create { zone, version, classes, fields, key, out } => {
            let classes = classes
                .iter()
                .map(|c| {
                    parse_class(c)
                        .map(|c| c as i32)
                        .ok_or_else(|| anyhow!("class {c:?} is not certification, inspection_result or industry_data"))
                })
                .collect::<Result<Vec<_>>>()?;
            let doc = ExportNegativeList {
                zone_id: zone,
                version,
                data_classes: classes,
                fields,
                issued_at_ms: SystemClock.now_ms(),
            };
            let key = ftz_pki::files::read_signing_key(&key)?;
            let env = envelope::seal(PayloadType::EXPORT_NEGATIVE_LIST, &doc, &[&key]);
            write(&out, &env)?;
            emit(
                fmt,
                || {
                    format!(
                        "wrote negative list v{} of {} to {}, signed by {}\n",
                        doc.version,
                        doc.zone_id,
                        out.display(),
                        key.key_id()
                    )
                },
                || json!({"file": out, "zone_id": doc.zone_id, "version": doc.version}),
            );
        }
        NegativeListCommand::Install { file } => {
            let env = read(&file)?;
            let r = AdminClient::new(channel()?)
                .install_negative_list(InstallNegativeListRequest { negative_list: Some(env) })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    if r.already_installed {
                        format!("negative list v{} was already installed\n", r.version)
                    } else {
                        format!("installed negative list v{}\n", r.version)
                    }
                },
                || json!({"version": r.version, "already_installed": r.already_installed}),
            );
        }
    }
    Ok(())
}
