//! `ftzctl data`: load the zone's industry dataset (role issuer), and ask other zones for
//! aggregates or minimised rows under their policies (role enterprise).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use ftz_policy::rows::parse_csv;
use ftz_proto::{
    AggregateFunction, AggregateQuery, FetchIndustryRowsRequest, ImportRowsRequest, IndustryRow,
    QueryIndustryDataRequest, RowFilter, issuer_client::IssuerClient, verify_client::VerifyClient,
};
use ftzctl::output::{Format, emit, time};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tonic::transport::Channel;

/// Rows per import call.
const BATCH: usize = 1000;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Load a CSV file into your zone's industry dataset (role issuer). The header must be
    /// enterprise_uscc,enterprise_name,industry_code,region,period,output_value,employment,capacity.
    /// Every row is checked first; a bad row is reported with its line number and nothing is sent.
    Import { file: PathBuf },
    /// An aggregate over another zone's industry data, under its policy (role enterprise).
    Query(QueryArgs),
    /// Minimised rows of another zone's industry data, where its policy allows (role enterprise).
    Rows(RowsArgs),
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The providing zone.
    #[arg(long)]
    from: String,
    /// count, sum or mean.
    #[arg(long)]
    function: String,
    /// output_value, employment or capacity (for sum and mean).
    #[arg(long, default_value = "")]
    metric: String,
    #[arg(long, value_delimiter = ',')]
    group_by: Vec<String>,
    /// FIELD=PREFIX, repeatable.
    #[arg(long = "filter")]
    filters: Vec<String>,
    #[arg(long)]
    purpose: String,
}

#[derive(Debug, Args)]
pub struct RowsArgs {
    #[arg(long)]
    from: String,
    #[arg(long = "filter")]
    filters: Vec<String>,
    #[arg(long)]
    purpose: String,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

fn filters(v: &[String]) -> Result<Vec<RowFilter>> {
    v.iter()
        .map(|f| {
            let (field, prefix) = f.split_once('=').ok_or_else(|| anyhow!("filter {f:?} is not FIELD=PREFIX"))?;
            Ok(RowFilter { field: field.to_string(), prefix: prefix.to_string() })
        })
        .collect()
}

/// Reads and checks a CSV file; every bad line is reported (up to a limit) with its number.
pub fn read_csv(path: &Path) -> Result<Vec<IndustryRow>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&text, 1).map_err(|bad| {
        anyhow!("{}: {} bad row(s), nothing imported:\n  {}", path.display(), bad.len(), bad.join("\n  "))
    })
}

pub async fn run(cmd: DataCommand, channel: Channel, fmt: Format) -> Result<()> {
    match cmd {
        DataCommand::Import { file } => {
            let rows = read_csv(&file)?;
            let mut client = IssuerClient::new(channel);
            let bar = if fmt == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let b = ProgressBar::new(rows.len() as u64);
                b.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            } else {
                ProgressBar::hidden()
            };
            let mut total = 0;
            for chunk in rows.chunks(BATCH) {
                let r = client.import_rows(ImportRowsRequest { rows: chunk.to_vec() }).await?.into_inner();
                total = r.total_rows;
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            emit(
                fmt,
                || format!("imported {} rows from {}; the dataset holds {total} rows\n", rows.len(), file.display()),
                || json!({"imported": rows.len(), "total_rows": total}),
            );
        }
        DataCommand::Query(q) => {
            let function = match q.function.as_str() {
                "count" => AggregateFunction::Count,
                "sum" => AggregateFunction::Sum,
                "mean" => AggregateFunction::Mean,
                other => bail!("function {other:?} is not count, sum or mean"),
            };
            let query = AggregateQuery {
                function: function as i32,
                metric: q.metric.clone(),
                group_by: q.group_by.clone(),
                filters: filters(&q.filters)?,
                purpose: q.purpose,
            };
            let a = VerifyClient::new(channel)
                .query_industry_data(QueryIndustryDataRequest { provider_zone: q.from, query: Some(query) })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    let mut t = format!(
                        "{} groups from {} under policy {} v{}{}; {}; kept here until {}\n",
                        a.groups.len(),
                        a.provider_zone,
                        a.policy_id,
                        a.policy_version,
                        if a.noised {
                            format!(" (noised: epsilon {} charged, {} left)", a.epsilon_charged, a.epsilon_remaining)
                        } else {
                            String::new()
                        },
                        if a.noised {
                            "groups are released by a noisy threshold (how many were held back is not told)".to_string()
                        } else {
                            format!("{} group(s) suppressed as too small", a.suppressed_groups)
                        },
                        time(a.retain_until_ms)
                    );
                    for g in &a.groups {
                        t.push_str(&format!(
                            "  {:<30} {:.2}\n",
                            if g.key.is_empty() { "(all)".into() } else { g.key.join(" / ") },
                            g.value
                        ));
                    }
                    t
                },
                || {
                    json!({
                        "provider_zone": a.provider_zone, "policy_id": a.policy_id, "policy_version": a.policy_version,
                        "noised": a.noised, "epsilon_charged": a.epsilon_charged, "epsilon_remaining": a.epsilon_remaining,
                        "suppressed_groups": a.suppressed_groups, "retain_until_ms": a.retain_until_ms,
                        "groups": a.groups.iter().map(|g| json!({"key": g.key, "value": g.value})).collect::<Vec<_>>(),
                    })
                },
            );
        }
        DataCommand::Rows(r) => {
            let a = VerifyClient::new(channel)
                .fetch_industry_rows(FetchIndustryRowsRequest {
                    provider_zone: r.from,
                    filters: filters(&r.filters)?,
                    purpose: r.purpose,
                    limit: r.limit,
                })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    let mut t = format!(
                        "{} rows under policy {} v{}; fields removed: {}; kept here until {}\n",
                        a.rows.len(),
                        a.policy_id,
                        a.policy_version,
                        a.dropped_fields.join(", "),
                        time(a.retain_until_ms)
                    );
                    for row in &a.rows {
                        let mut fields: Vec<_> = row.fields.iter().collect();
                        fields.sort();
                        t.push_str(&format!(
                            "  {}\n",
                            fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
                        ));
                    }
                    t
                },
                || {
                    json!({
                        "policy_id": a.policy_id, "policy_version": a.policy_version, "retain_until_ms": a.retain_until_ms,
                        "dropped_fields": a.dropped_fields, "rows": a.rows.iter().map(|r| &r.fields).collect::<Vec<_>>(),
                    })
                },
            );
        }
    }
    Ok(())
}
