//! The issuer's page: issue a certification, revoke a record, push an inspection result to
//! another zone, import industry rows from a CSV file (in parts, with progress). Each form is
//! posted as JSON by the page's script to the JSON API route it names (`data-api`).

use maud::{Markup, html};
use serde_json::json;

use super::{
    Api, Ctx, Page,
    fmt::{list, n, s, time},
    i18n::T,
};
use crate::gateway::problem::Problem;

pub(crate) async fn page(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    // Only an issuer may see the page: the issuing keys are its first call.
    let keys = api.call("/api/v1/issuer/list-issuing-keys", json!({})).await?;
    let field = |name: &str, label: T, kind: &str, required: bool| -> Markup {
        html! { label { (ctx.t(label)) input name=(name) type=(kind) required[required] autocomplete="off"; } }
    };
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Issuer)) }
        p { (ctx.t(T::Zone)) " " strong { (s(&keys, "zone_id")) } " · " (ctx.t(T::Registry)) " v" (n(&keys, "registry_version")) }
        ul.keys { @for k in list(&keys, "keys") {
            li { code { (s(k, "key_id")) } " " (s(k, "purpose")) " · " (ctx.t(T::ValidUntil)) " "
                @if n(k, "valid_until_ms") > 0 { (time(n(k, "valid_until_ms"))) } @else { (ctx.t(T::NoEnd)) } }
        } }
        div.forms {
            form #issue-form.api data-api="/api/v1/issuer/issue-certification" data-wrap="certification" {
                h2 { (ctx.t(T::IssueCertification)) }
                (field("record_id", T::RecordId, "text", true))
                label { (ctx.t(T::Scheme))
                    select name="cert_type" { @for c in ["AEO_ADVANCED", "HIGH_TECH_ENTERPRISE", "CCC", "ISO_9001", "PROFESSIONAL_TITLE"] { option { (c) } } }
                }
                (field("holder_uscc", T::Holder, "text", true))
                (field("holder_name", T::HolderName, "text", true))
                label { (ctx.t(T::ScopeLabel)) input name="scope" value="*"; }
                label { (ctx.t(T::IssuingBody)) input name="issuing_body" required; }
                label { (ctx.t(T::ValidUntil)) input name="expires_at_ms" type="datetime-local" data-type="ms" required; }
                button type="submit" { (ctx.t(T::Submit)) }
                output.result {}
            }
            form #revoke-form.api data-api="/api/v1/issuer/revoke" {
                h2 { (ctx.t(T::Revoke)) }
                (field("record_id", T::RecordId, "text", true))
                label { (ctx.t(T::Reason)) input name="reason" value="withdrawn"; }
                button type="submit" { (ctx.t(T::Submit)) }
                output.result {}
            }
            form #push-form.api data-api="/api/v1/issuer/push-inspection" {
                h2 { (ctx.t(T::Push)) }
                (field("record_id", T::RecordId, "text", true))
                (field("to_zone", T::ToZone, "text", true))
                label { (ctx.t(T::Purpose)) input name="purpose" value="import-clearance"; }
                button type="submit" { (ctx.t(T::Submit)) }
                output.result {}
            }
            form #import-form {
                h2 { (ctx.t(T::ImportRows)) }
                p.hint { code { (ftz_policy::rows::FIELDS.join(",")) } }
                input #import-file type="file" accept=".csv,text/csv";
                button #import-submit type="button" { (ctx.t(T::Submit)) }
                progress #import-progress max="1" value="0" {}
                div #import-result aria-live="polite" {}
            }
        }
    }))
}
