//! The auditor's pages: the log (filtered, a page at a time, by index so that paging through a
//! million entries costs the same on every page), one entry with its proof checked in the
//! browser, the witness matrix, equivocation evidence and the cross-check upload.

use base64::{Engine, engine::general_purpose::STANDARD};
use maud::{Markup, PreEscaped, html};
use serde_json::{Value, json};

use super::{
    Api, Ctx, Page,
    fmt::{list, n, parse_time, query_string, s, time},
    i18n::T,
};
use crate::gateway::problem::Problem;

/// Entries on one page of the log.
pub(crate) const PAGE: u64 = 50;

const CLASSES: [&str; 3] = ["certification", "inspection_result", "industry_data"];
const DECISIONS: [&str; 7] = ["allowed", "refused", "unacknowledged", "transfer", "refusal", "config", "deletion"];

pub(crate) async fn log(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let (decision, zone, class) = (ctx.q("decision"), ctx.q("zone"), ctx.q("class"));
    let (from, until) = (ctx.q("from"), ctx.q("until"));
    let filtered = !(decision.is_empty() && zone.is_empty() && class.is_empty() && from.is_empty() && until.is_empty());
    let mut filter = json!({
        "limit": PAGE,
        "decision": decision,
        "zone": zone,
        "data_class": class,
        "from_ms": parse_time(from).unwrap_or(0).to_string(),
        "until_ms": parse_time(until).unwrap_or(0).to_string(),
    });
    let start = match ctx.q("from_index").parse::<u64>() {
        Ok(i) => i,
        Err(_) => {
            // The latest page: the log's size first (a page past the end is empty but says it).
            let probe =
                api.call("/api/v1/audit/list-entries", json!({"from_index": u64::MAX.to_string(), "limit": 1})).await?;
            let size = n(&probe, "log_size").max(0) as u64;
            size.saturating_sub(if filtered { PAGE * 10 } else { PAGE })
        }
    };
    filter["from_index"] = json!(start.to_string());
    let page = api.call("/api/v1/audit/list-entries", filter).await?;
    let (next, size) = (n(&page, "next_index").max(0) as u64, n(&page, "log_size").max(0) as u64);
    let link = |from_index: u64| {
        let mut q: Vec<(String, String)> =
            ctx.query.iter().filter(|(k, _)| k != "from_index" && k != "lang").cloned().collect();
        q.push(("from_index".into(), from_index.to_string()));
        format!("/audit?{}", query_string(&q))
    };
    let latest = {
        let q: Vec<(String, String)> =
            ctx.query.iter().filter(|(k, _)| k != "from_index" && k != "lang").cloned().collect();
        format!("/audit?{}", query_string(&q))
    };
    let entries = list(&page, "entries");
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Audit)) }
        (audit_nav(ctx))
        form #filters method="get" action="/audit" {
            label { (ctx.t(T::Decision))
                select name="decision" {
                    option value="" { (ctx.t(T::Any)) }
                    @for d in DECISIONS { option value=(d) selected[d == decision] { (d) } }
                }
            }
            label { (ctx.t(T::Zones)) input name="zone" value=(zone) size="12"; }
            label { (ctx.t(T::Class))
                select name="class" {
                    option value="" { (ctx.t(T::Any)) }
                    @for c in CLASSES { option value=(c) selected[c == class] { (c) } }
                }
            }
            label { (ctx.t(T::From)) input type="datetime-local" name="from" value=(from); }
            label { (ctx.t(T::Until)) input type="datetime-local" name="until" value=(until); }
            button type="submit" { (ctx.t(T::Filter)) }
        }
        p.meta { (ctx.t(T::LogSize)) ": " strong #log-size { (size) } " · " (start) "–" (next) }
        table #entries {
            thead { tr {
                th { (ctx.t(T::Index)) } th { (ctx.t(T::Time)) } th { (ctx.t(T::Kind)) }
                th { (ctx.t(T::Decision)) } th { (ctx.t(T::Zones)) } th { (ctx.t(T::Class)) } th { (ctx.t(T::Summary)) }
            } }
            tbody {
                @for e in entries {
                    tr data-decision=(s(e, "decision")) {
                        td { a href=(format!("/audit/entry/{}", n(e, "index"))) { (n(e, "index")) } }
                        td { (time(n(e, "at_ms"))) }
                        td { (s(e, "kind")) }
                        td { span.decision data-decision=(s(e, "decision")) { (s(e, "decision")) } }
                        td { (list(e, "zones").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" → ")) }
                        td { (s(e, "data_class")) }
                        td.summary { (s(e, "summary")) }
                    }
                }
            }
        }
        @if entries.is_empty() { p.empty { (ctx.t(T::NoResults)) } }
        nav.pages {
            a #first-page href=(link(0)) { "⇤ " (ctx.t(T::FirstPage)) }
            @if !filtered && start > 0 { a #prev-page href=(link(start.saturating_sub(PAGE))) { "← " (ctx.t(T::PrevPage)) } }
            @if next < size { a #next-page href=(link(next)) { (ctx.t(T::NextPage)) " →" } }
            a #latest-page href=(latest) { (ctx.t(T::LatestPage)) " ⇥" }
        }
    }))
}

pub(crate) fn audit_nav(ctx: &Ctx) -> Markup {
    let items = [
        ("/audit", T::Audit),
        ("/audit/charts", T::Charts),
        ("/audit/witnesses", T::Witnesses),
        ("/audit/equivocations", T::Equivocations),
        ("/audit/cross-check", T::CrossCheck),
        ("/audit/registry", T::RegistryHistory),
    ];
    html! {
        nav.sub { @for (href, t) in items { a href=(href) class=[(ctx.path == href).then_some("active")] { (ctx.t(t)) } } }
    }
}

pub(crate) async fn entry(ctx: &Ctx, api: &Api, index: u64) -> Result<Page, Problem> {
    let got = api.call("/api/v1/audit/get-entry", json!({"index": index.to_string()})).await?;
    let keys = api.call("/api/v1/audit/get-checkpoint", json!({})).await.ok();
    let e = got.get("entry").cloned().unwrap_or_default();
    let leaf = STANDARD.decode(s(&e, "leaf")).unwrap_or_default();
    let proof = s(&got, "proof");
    let vkeys: Vec<&str> =
        keys.as_ref().map(|k| list(k, "keys").iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let data = json!({
        "index": index,
        "leaf_hex": hex::encode(&leaf),
        "proof": proof,
        "keys": vkeys,
    });
    let checkpoint = proof.split_once("\n\n").map(|(_, c)| c).unwrap_or("");
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Entry)) " " (index) }
        (audit_nav(ctx))
        h2 { (ctx.t(T::Decoded)) }
        table.fields {
            tr { th { (ctx.t(T::Kind)) } td { (s(&e, "kind")) } }
            tr { th { (ctx.t(T::Time)) } td { (time(n(&e, "at_ms"))) } }
            tr { th { (ctx.t(T::Decision)) } td { (s(&e, "decision")) } }
            tr { th { (ctx.t(T::Zones)) } td { (list(&e, "zones").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" → ")) } }
            tr { th { (ctx.t(T::Class)) } td { (s(&e, "data_class")) } }
            tr { th { (ctx.t(T::Summary)) } td { (s(&e, "summary")) } }
        }
        section #proof-check.check data-state=(if proof.is_empty() { "none" } else { "pending" }) {
            h2 { (ctx.t(T::ProofCheck)) }
            p.explain { (ctx.t(T::ProofExplain)) }
            @if proof.is_empty() {
                p { (ctx.t(T::NoProof)) }
            } @else {
                p #proof-status { (ctx.t(T::ProofPending)) }
                ul #proof-steps {}
                details #pinned {
                    summary { (ctx.t(T::Keys)) }
                    label { (ctx.t(T::PinnedKeys)) textarea #pinned-keys rows="4" cols="100" spellcheck="false" {} }
                    button #pinned-save type="button" { (ctx.t(T::SaveKeys)) }
                }
            }
        }
        h2 { (ctx.t(T::Leaf)) " (" (leaf.len()) " B)" }
        pre.hex { (hex::encode(&leaf)) }
        h2 { (ctx.t(T::Proof)) }
        pre { (proof) }
        h2 { (ctx.t(T::Checkpoint)) }
        pre { (checkpoint) }
        h2 { (ctx.t(T::Keys)) }
        ul.keys { @for k in &vkeys { li { code { (k) } } } }
        script #proof-data type="application/json" { (PreEscaped(script_json(&data))) }
        script src="/static/proof.js" defer {}
    }))
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` only occur in strings, where their
/// `\u` escapes mean the same.
pub(crate) fn script_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

pub(crate) async fn witnesses(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let cps = api.call("/api/v1/audit/list-checkpoints", json!({"limit": 20})).await?;
    let checkpoints = list(&cps, "checkpoints");
    // One column per witness that cosigned any of them, in name order.
    let names: std::collections::BTreeSet<&str> =
        checkpoints.iter().flat_map(|c| list(c, "cosignatures").iter().map(|w| s(w, "name"))).collect();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Witnesses)) }
        (audit_nav(ctx))
        p { (ctx.t(T::WitnessIntro)) }
        table #witness-matrix {
            thead { tr { th { (ctx.t(T::Size)) } @for w in &names { th { code { (w) } } } } }
            tbody {
                @for c in checkpoints {
                    tr {
                        th { a href=(format!("/audit/entry/{}", (n(c, "size") - 1).max(0))) { (n(c, "size")) } }
                        @for w in &names {
                            @match list(c, "cosignatures").iter().find(|x| s(x, "name") == *w) {
                                Some(x) => td.cosigned data-ok=(x.get("verified").and_then(Value::as_bool).unwrap_or(false)) title=(time(n(x, "cosigned_at_ms"))) {
                                    @if x.get("verified").and_then(Value::as_bool).unwrap_or(false) { "✔ " } @else { "✘ " }
                                    (age(now - n(x, "cosigned_at_ms")))
                                },
                                None => td.missing data-ok="false" { "— " (ctx.t(T::Missing)) },
                            }
                        }
                    }
                }
            }
        }
        @if checkpoints.is_empty() { p.empty { (ctx.t(T::NoResults)) } }
    }))
}

/// How long ago, in the largest unit that fits.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

pub(crate) async fn equivocations(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let ev = api.call("/api/v1/audit/list-equivocations", json!({})).await?;
    let items = list(&ev, "evidence");
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Equivocations)) }
        (audit_nav(ctx))
        section #equivocations data-count=(items.len()) {
            @if items.is_empty() { p.ok { (ctx.t(T::NoEquivocations)) } }
            @for e in items { pre.evidence { (e.as_str().unwrap_or("")) } }
        }
    }))
}

pub(crate) async fn cross_check(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    // Only an auditor may compare: the page says so before any upload.
    api.call("/api/v1/audit/get-checkpoint", json!({})).await?;
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::CrossCheck)) }
        (audit_nav(ctx))
        p { (ctx.t(T::CrossIntro)) }
        form #cross-check-form {
            input #cross-check-files type="file" multiple webkitdirectory;
            button #cross-check-submit type="button" { (ctx.t(T::Compare)) }
            progress #cross-check-progress hidden max="1" value="0" {}
        }
        div #cross-check-result aria-live="polite" {}
    }))
}

/// Every registry version the node installed, oldest first: which federation it trusted, and
/// since when (the digest of the exact signed envelope, the authorities that counted).
pub(crate) async fn registry(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let h = api.call("/api/v1/audit/list-registry-history", json!({})).await?;
    let installs = list(&h, "installs");
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::RegistryHistory)) }
        (audit_nav(ctx))
        table #registry-history {
            thead { tr { th { (ctx.t(T::Version)) } th { (ctx.t(T::Time)) } th { "SHA-256" } th { (ctx.t(T::Signers)) } } }
            tbody { @for i in installs {
                tr {
                    td { "v" (n(i, "version")) }
                    td { (time(n(i, "installed_at_ms"))) }
                    td { code { (hex::encode(STANDARD.decode(s(i, "envelope_digest")).unwrap_or_default())) } }
                    td { @for k in list(i, "counted_signers") { code { (k.as_str().unwrap_or("")) } " " } }
                }
            } }
        }
    }))
}
