//! The enterprise's pages: verify a record by zone and id (or an exported bundle file), a lot's
//! inspection results, and the bundle to download.

use maud::{Markup, html};
use serde_json::{Value, json};

use super::{
    Api, Ctx, Page,
    fmt::{b, list, n, s, time},
    i18n::T,
};
use crate::gateway::problem::Problem;

/// The purpose a verification from the console states (as `ftzctl verify record` does).
const PURPOSE: &str = "verification";

pub(crate) async fn verify(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let (zone, id) = (ctx.q("zone"), ctx.q("id"));
    let (recognising, purpose) = (ctx.q("recognising_zone"), ctx.q("purpose"));
    let purpose = if purpose.is_empty() { PURPOSE } else { purpose };
    let result = if id.is_empty() {
        None
    } else {
        let req = json!({
            "ref": {"issuing_zone": zone, "record_id": id},
            "recognising_zone": recognising,
            "purpose": purpose,
        });
        Some(api.call("/api/v1/verify/verify-record", req).await)
    };
    let zones = api.call("/api/v1/verify/list-zones", json!({})).await.ok();
    let zone_ids: Vec<String> = zones
        .as_ref()
        .map(|z| list(z, "zones").iter().map(|z| s(z, "zone_id").to_string()).collect())
        .unwrap_or_default();
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Verify)) }
        form #verify-form method="get" action="/verify" {
            label { (ctx.t(T::IssuingZone))
                input name="zone" list="zone-ids" value=(zone) required autocomplete="off";
            }
            datalist #zone-ids { @for z in &zone_ids { option value=(z) {} } }
            label { (ctx.t(T::RecordId)) input name="id" value=(id) required autocomplete="off"; }
            label { (ctx.t(T::RecognisingZone)) input name="recognising_zone" list="zone-ids" value=(recognising); }
            label { (ctx.t(T::Purpose)) input name="purpose" value=(purpose); }
            button type="submit" { (ctx.t(T::Check)) }
        }
        @match result {
            Some(Ok(r)) => {
                (verdict(ctx, &r, Some("verdict")))
                p {
                    button #download-bundle type="button" data-zone=(zone) data-id=(id)
                        data-recognising=(recognising) data-purpose=(purpose) { (ctx.t(T::DownloadBundle)) }
                    " " span #download-status {}
                }
            }
            Some(Err(p)) => (super::refusal(ctx, &p.reason, &p.detail)),
            None => {}
        }
        section #bundle-drop.drop {
            h2 { (ctx.t(T::DropBundle)) }
            input #bundle-file type="file";
            div #bundle-verdict aria-live="polite" {}
        }
    }))
}

pub(crate) async fn lot(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let (lot, recognising) = (ctx.q("lot"), ctx.q("recognising_zone"));
    let found = if lot.is_empty() {
        None
    } else {
        let req = json!({"lot_id": lot, "recognising_zone": recognising, "purpose": "import-clearance"});
        Some(api.call("/api/v1/verify/find-inspections", req).await)
    };
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Lot)) }
        form #lot-form method="get" action="/lot" {
            label { (ctx.t(T::LotId)) input name="lot" value=(lot) required autocomplete="off"; }
            label { (ctx.t(T::RecognisingZone)) input name="recognising_zone" value=(recognising); }
            button type="submit" { (ctx.t(T::Find)) }
        }
        @match found {
            Some(Ok(r)) => {
                @let results = list(&r, "results");
                @if results.is_empty() { p.empty { (ctx.t(T::NoResults)) } }
                table #lot-results {
                    thead { tr {
                        th { (ctx.t(T::RecordId)) } th { (ctx.t(T::IssuingZone)) } th { (ctx.t(T::Verdict)) }
                        th { (ctx.t(T::Authentic)) } th { (ctx.t(T::Current)) } th { (ctx.t(T::Recognised)) }
                    } }
                    tbody {
                        @for r in results {
                            tr data-verdict=(verdict_code(r)) {
                                td { a href=(format!("/verify?zone={}&id={}", enc(s(r, "issuing_zone")), enc(s(r, "record_id")))) { (s(r, "record_id")) } }
                                td { (s(r, "issuing_zone")) }
                                td { (verdict_word(ctx, r)) }
                                td { (mark(ctx, b(r, "authentic"), s(r, "authenticity_reason"))) }
                                td { (mark(ctx, is_active(r), s(r, "status_reason"))) }
                                td { (mark(ctx, b(r, "recognised"), s(r, "recognition_reason"))) }
                            }
                        }
                    }
                }
            }
            Some(Err(p)) => (super::refusal(ctx, &p.reason, &p.detail)),
            None => {}
        }
    }))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn is_active(r: &Value) -> bool {
    s(r, "status") == "RECORD_STATUS_ACTIVE"
}

fn verdict_code(r: &Value) -> &'static str {
    if b(r, "valid") { "VALID" } else { "NOT_VALID" }
}

fn verdict_word(ctx: &Ctx, r: &Value) -> &'static str {
    if b(r, "valid") { ctx.t(T::Valid) } else { ctx.t(T::NotValid) }
}

fn mark(ctx: &Ctx, ok: bool, reason: &str) -> Markup {
    html! {
        span.mark data-ok=(ok) { @if ok { "✔ " (ctx.t(T::Yes)) } @else { "✘ " (ctx.t(T::No)) } }
        @if !reason.is_empty() { " " code.reason { (reason) } }
    }
}

/// A verification's verdict and its three parts, each with its reason (for a record verified
/// by the node, and for a bundle checked offline).
pub(crate) fn verdict(ctx: &Ctx, r: &Value, id: Option<&str>) -> Markup {
    let status = s(r, "status").trim_start_matches("RECORD_STATUS_");
    let agreement = s(r, "agreement_id");
    html! {
        section.verdict id=[id] data-verdict=(verdict_code(r)) {
            h2 { (ctx.t(T::Verdict)) ": " span.word data-ok=(b(r, "valid")) { (verdict_word(ctx, r)) } }
            p.explanation { (s(r, "explanation")) }
            table.parts {
                tr data-part="authentic" data-ok=(b(r, "authentic")) {
                    th { (ctx.t(T::Authentic)) }
                    td { (mark(ctx, b(r, "authentic"), s(r, "authenticity_reason"))) }
                    td { (s(r, "issuing_zone")) " · " code { (s(r, "signing_key_id")) } }
                }
                tr data-part="current" data-ok=(is_active(r)) {
                    th { (ctx.t(T::Current)) }
                    td { (mark(ctx, is_active(r), s(r, "status_reason"))) }
                    td { (status) " · " (ctx.t(T::StatusAge)) " " (time(n(r, "status_as_of_ms"))) }
                }
                tr data-part="recognised" data-ok=(b(r, "recognised")) {
                    th { (ctx.t(T::Recognised)) }
                    td { (mark(ctx, b(r, "recognised"), s(r, "recognition_reason"))) }
                    td {
                        (s(r, "recognising_zone"))
                        @if !agreement.is_empty() { " · " (ctx.t(T::Agreement)) " " code { (agreement) " v" (n(r, "agreement_version")) } }
                    }
                }
            }
            p.meta { (ctx.t(T::RecordId)) " " code { (s(r, "record_id")) } " · " (ctx.t(T::Source)) " " (s(r, "source")) " · " (time(n(r, "checked_at_ms"))) }
        }
    }
}
