//! The zone IT department's pages: the node's status, peers, registry, agreements, policies,
//! outbox and privacy budgets on one page; installing a signed document by upload on another.

use maud::{Markup, html};
use serde_json::{Value, json};

use super::{
    Api, Ctx, Page,
    fmt::{b, list, n, s, time},
    i18n::T,
    uploads::envelope_from_json,
};
use crate::gateway::problem::Problem;

pub(crate) async fn overview(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    // The status decides whether the page is the caller's at all.
    let status = api.call("/api/v1/admin/get-node-status", json!({})).await?;
    let refresh = ctx.q("refresh") == "1";
    let (peers, registry, agreements, policies, outbox, budgets) = tokio::join!(
        api.call("/api/v1/admin/list-peers", json!({"refresh": refresh})),
        api.call("/api/v1/admin/get-registry", json!({})),
        api.call("/api/v1/admin/list-agreements", json!({})),
        api.call("/api/v1/admin/list-policies", json!({})),
        api.call("/api/v1/admin/list-outbox", json!({"limit": 50})),
        api.call("/api/v1/admin/list-budgets", json!({})),
    );
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Admin)) }
        nav.sub { a href="/admin" class="active" { (ctx.t(T::Status)) } a href="/admin/install" { (ctx.t(T::Install)) } }
        section #status {
            h2 { (ctx.t(T::Status)) }
            table.fields {
                tr { th { (ctx.t(T::Zone)) } td { (s(&status, "zone_id")) " · " (s(&status, "federation_id")) } }
                tr { th { (ctx.t(T::Registry)) } td { "v" (n(&status, "registry_version")) } }
                tr { th { "node key" } td { code { (s(&status, "node_key_id")) } } }
                tr { th { (ctx.t(T::Uptime)) } td { (time(n(&status, "started_at_ms"))) } }
                tr { th { (ctx.t(T::LogSize)) } td { (n(&status, "audit_log_size")) " (" (ctx.t(T::Checkpoint)) " " (n(&status, "checkpoint_size")) ")" } }
                tr { th { (ctx.t(T::Outbox)) } td { (n(&status, "outbox_items")) } }
                tr { th { (ctx.t(T::Equivocations)) } td { (n(&status, "equivocations_found")) } }
                tr { th { (ctx.t(T::Version)) } td { (s(&status, "software_version")) } }
            }
        }
        section {
            h2 { (ctx.t(T::Peers)) " " a.button href="/admin?refresh=1" { (ctx.t(T::Refresh)) } }
            (section(ctx, peers, |v| peers_table(ctx, v)))
        }
        section #registry { h2 { (ctx.t(T::Registry)) } (section(ctx, registry, |v| registry_table(ctx, v))) }
        section #agreements { h2 { (ctx.t(T::Agreements)) } (section(ctx, agreements, |v| agreements_table(ctx, v))) }
        section #policies { h2 { (ctx.t(T::Policies)) } (section(ctx, policies, |v| policies_table(ctx, v))) }
        section #outbox { h2 { (ctx.t(T::Outbox)) } (section(ctx, outbox, |v| outbox_table(ctx, v))) }
        section #budgets { h2 { (ctx.t(T::Budgets)) } (section(ctx, budgets, |v| budgets_table(ctx, v))) }
    }))
}

/// A part of the page: its table, or why the node refused it.
fn section(ctx: &Ctx, r: Result<Value, Problem>, f: impl FnOnce(&Value) -> Markup) -> Markup {
    match r {
        Ok(v) => f(&v),
        Err(p) => super::refusal(ctx, &p.reason, &p.detail),
    }
}

fn peers_table(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        table #peers {
            thead { tr { th { (ctx.t(T::Zone)) } th { (ctx.t(T::LastPing)) } th { (ctx.t(T::RoundTrip)) } th { (ctx.t(T::Registry)) } th { (ctx.t(T::LastError)) } } }
            tbody {
                @for p in list(v, "peers") {
                    @let ok = n(p, "last_ok_ms") > 0 && n(p, "last_ok_ms") >= n(p, "last_failure_ms");
                    tr data-ok=(ok) {
                        td { (s(p, "zone_id")) }
                        td { (time(n(p, "last_ok_ms"))) }
                        td { @if n(p, "round_trip_us") > 0 { (format!("{:.1} ms", n(p, "round_trip_us") as f64 / 1000.0)) } }
                        td { @if n(p, "peer_registry_version") > 0 { "v" (n(p, "peer_registry_version")) } }
                        td { (time(n(p, "last_failure_ms"))) " " code { (s(p, "last_error")) } }
                    }
                }
            }
        }
    }
}

fn registry_table(ctx: &Ctx, v: &Value) -> Markup {
    let parsed = v.get("registry").and_then(envelope_from_json).and_then(|e| ftz_core::Registry::parse(e).ok());
    html! {
        p { "v" (n(v, "version")) " · " (time(n(v, "installed_at_ms")))
            @if let Some(r) = &parsed { " · quorum " (r.quorum()) " · " (ctx.t(T::ValidUntil)) " " (time(r.valid_until_ms())) } }
        @if let Some(r) = &parsed {
            table {
                thead { tr { th { (ctx.t(T::Zone)) } th { "endpoint" } th { (ctx.t(T::ValidUntil)) } th { (ctx.t(T::Keys)) } } }
                tbody { @for z in r.zones() {
                    tr { td { (z.id.as_str()) " " (z.display_name) } td { code { (z.endpoint) } } td { (time(z.valid_until_ms)) } td { (z.keys.len()) } }
                } }
            }
        }
    }
}

fn agreements_table(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        table {
            thead { tr { th { "id" } th { (ctx.t(T::Version)) } th { (ctx.t(T::ZonePair)) } th { (ctx.t(T::ValidUntil)) } th { "rules" } } }
            tbody { @for a in list(v, "agreements") {
                tr { td { code { (s(a, "agreement_id")) } } td { (n(a, "version")) } td { (s(a, "from_zone")) " → " (s(a, "to_zone")) }
                     td { (time(n(a, "valid_until_ms"))) } td { @for r in list(a, "rules") { div { (r.as_str().unwrap_or("")) } } } }
            } }
        }
    }
}

fn policies_table(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        table {
            thead { tr { th { "id" } th { (ctx.t(T::Version)) } th { (ctx.t(T::ZonePair)) } th { (ctx.t(T::Class)) } th { (ctx.t(T::Purpose)) } th { (ctx.t(T::ValidUntil)) } } }
            tbody { @for p in list(v, "policies") {
                tr data-revoked=(b(p, "revoked")) {
                    td { code { (s(p, "policy_id")) } @if b(p, "revoked") { " " span.bad { (ctx.t(T::Revoked)) } } }
                    td { (n(p, "version")) }
                    td { (s(p, "provider_zone")) " → " (list(p, "consumer_zones").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                    td { (s(p, "data_class")) }
                    td { (list(p, "purposes").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                    td { (time(n(p, "valid_until_ms"))) }
                }
            } }
        }
    }
}

fn outbox_table(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        p { (ctx.t(T::Count)) ": " strong { (n(v, "total")) } }
        table {
            thead { tr { th { (ctx.t(T::Kind)) } th { (ctx.t(T::ToZone)) } th { (ctx.t(T::Time)) } th { (ctx.t(T::Attempts)) } th { (ctx.t(T::LastError)) } } }
            tbody { @for e in list(v, "entries") {
                tr { td { (s(e, "kind")) } td { (s(e, "to_zone")) } td { (time(n(e, "created_at_ms"))) } td { (n(e, "attempts")) } td { code { (s(e, "last_error")) } } }
            } }
        }
    }
}

fn budgets_table(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        table {
            thead { tr { th { "policy" } th { (ctx.t(T::Consumer)) } th { (ctx.t(T::Spent)) } th { (ctx.t(T::Budget)) } th {} } }
            tbody { @for x in list(v, "budgets") {
                @let (spent, budget) = (n(x, "spent_milli"), n(x, "budget_milli"));
                tr {
                    td { code { (s(x, "policy_id")) } " v" (n(x, "policy_version")) }
                    td { (s(x, "consumer_zone")) }
                    td { (format!("ε {:.3}", spent as f64 / 1000.0)) }
                    td { (format!("ε {:.3}", budget as f64 / 1000.0)) }
                    td { meter min="0" max=(budget.max(1)) value=(spent.min(budget.max(1))) {} }
                }
            } }
        }
    }
}

/// The kinds of signed document an admin installs, with the route and request field of each.
pub(crate) const DOCUMENTS: [(&str, &str, &str); 6] = [
    ("registry", "/api/v1/admin/install-registry", "registry"),
    ("agreement", "/api/v1/admin/install-agreement", "agreement"),
    ("policy", "/api/v1/admin/install-policy", "policy"),
    ("policy-revocation", "/api/v1/admin/revoke-policy", "revocation"),
    ("negative-list", "/api/v1/admin/install-negative-list", "negative_list"),
    ("user-revocations", "/api/v1/admin/install-user-revocations", "revocations"),
];

pub(crate) async fn install(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    api.call("/api/v1/admin/get-node-status", json!({})).await?;
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Install)) }
        nav.sub { a href="/admin" { (ctx.t(T::Status)) } a href="/admin/install" class="active" { (ctx.t(T::Install)) } }
        form #install-form {
            label { (ctx.t(T::DocumentKind))
                select #install-kind name="kind" { @for (k, _, _) in DOCUMENTS { option value=(k) { (k) } } }
            }
            label { (ctx.t(T::File)) input #install-file type="file" required; }
            button #install-submit type="button" { (ctx.t(T::Submit)) }
        }
        div #install-result aria-live="polite" {}
    }))
}
