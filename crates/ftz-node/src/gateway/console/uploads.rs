//! What the pages' script sends that is not plain JSON API: files. A signed document to install,
//! a bundle to check, another zone's export to compare, a CSV part to import are posted as JSON
//! (the file's bytes in base64; only a JSON body is accepted, which another site cannot send),
//! turned into the gRPC method's request here, and answered with an HTML fragment the page
//! shows (rendered by the same templates as the pages), or, for a bundle to download, its bytes.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use ftz_core::Reason;
use http_body_util::Full;
use maud::{Markup, html};
use prost::Message;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

use super::{
    Api, Ctx,
    admin::DOCUMENTS,
    enterprise::verdict,
    fmt::{n, s},
    i18n::{Lang, T},
};
use crate::{
    conn::ConnInfo,
    gateway::{Gateway, problem::Problem, respond, routes::routes},
};

pub(super) async fn handle(
    gw: &Gateway,
    req: http::Request<hyper::body::Incoming>,
    info: ConnInfo,
) -> Result<http::Response<Full<Bytes>>, Problem> {
    let path = req.uri().path().to_string();
    let lang = Lang::of(req.headers(), None);
    if req.method() != http::Method::POST {
        return Err(Problem::http(ftz_client::HttpRefusal::MethodNotAllowed, format!("{path} takes POST")));
    }
    let body = gw.read_json_body(req, &info).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(Reason::MalformedRequest, format!("the body is not JSON: {e}")))?;
    let ctx = Ctx { lang, zone: gw.zone.clone(), who: String::new(), path: path.clone(), query: vec![] };
    let api = Api::new(gw.grpc.clone(), info);
    match path.as_str() {
        "/console/export-bundle" => export_bundle(&api, &v).await,
        "/console/import-rows" => import_rows(&api, &v).await,
        "/console/install" => Ok(fragment(install(&ctx, &api, &v).await, &ctx)),
        "/console/verify-bundle" => Ok(fragment(verify_bundle(&ctx, &api, &v).await, &ctx)),
        "/console/cross-check" => Ok(fragment(cross_check(&ctx, &api, &v).await, &ctx)),
        p => Err(Problem::http(ftz_client::HttpRefusal::NotFound, format!("the console has no upload {p}"))),
    }
}

/// An answer fragment, or the refusal as one (with the refusal's status).
fn fragment(r: Result<Markup, Problem>, ctx: &Ctx) -> http::Response<Full<Bytes>> {
    let (status, m) = match r {
        Ok(m) => (200, m),
        Err(p) => (p.status, html! { div.result data-state="failed" { (super::refusal(ctx, &p.reason, &p.detail)) } }),
    };
    respond(status, Bytes::from(m.into_string()), super::HTML)
}

fn file(v: &Value, key: &str) -> Result<Vec<u8>, Problem> {
    STANDARD
        .decode(s(v, key))
        .map_err(|_| Problem::new(Reason::MalformedRequest, format!("{key} must be the file's bytes in base64")))
}

/// A signed document's bytes (one protobuf `Envelope`, as `ftzctl` writes them) as proto3 JSON.
fn envelope_json(bytes: &[u8]) -> Result<Value, Problem> {
    let desc = routes()
        .pool
        .get_message_by_name("ftz.v1.Envelope")
        .ok_or_else(|| Problem::new(Reason::Internal, "no Envelope descriptor"))?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| {
        Problem::new(Reason::MalformedRequest, format!("the file is not a signed document (protobuf Envelope): {e}"))
    })?;
    msg.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new().use_proto_field_name(true))
        .map_err(|e| Problem::new(Reason::Internal, e.to_string()))
}

/// An `Envelope` in proto3 JSON (as an answer carries it) as the message.
pub(crate) fn envelope_from_json(v: &Value) -> Option<ftz_proto::Envelope> {
    let desc = routes().pool.get_message_by_name("ftz.v1.Envelope")?;
    let msg = DynamicMessage::deserialize(desc, v.clone()).ok()?;
    ftz_proto::Envelope::decode(msg.encode_to_vec().as_slice()).ok()
}

async fn install(ctx: &Ctx, api: &Api, v: &Value) -> Result<Markup, Problem> {
    let kind = s(v, "kind");
    let (_, route, field) = DOCUMENTS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .ok_or_else(|| Problem::new(Reason::InvalidArgument, format!("no kind of document {kind:?}")))?;
    let env = envelope_json(&file(v, "file")?)?;
    let answer = api.call(route, json!({ *field: env })).await?;
    Ok(html! {
        div.result data-state="ok" {
            h2 { "✔ " (kind) }
            (fields(ctx, &answer))
        }
    })
}

/// An answer's scalar fields, as a table.
fn fields(ctx: &Ctx, v: &Value) -> Markup {
    html! {
        table.fields {
            thead { tr { th { (ctx.t(T::Part)) } th { (ctx.t(T::Value)) } } }
            tbody {
                @if let Some(o) = v.as_object() {
                    @for (k, x) in o {
                        @if !x.is_object() && !x.as_array().is_some_and(|a| a.is_empty() || a.iter().any(Value::is_object)) {
                            tr { th { (k) } td { (match x { Value::String(t) if k.ends_with("_at_ms") => super::fmt::time(t.parse().unwrap_or(0)), Value::String(s) => s.clone(), Value::Array(a) => a.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join(", "), other => other.to_string() }) } }
                        }
                    }
                }
            }
        }
    }
}

async fn verify_bundle(ctx: &Ctx, api: &Api, v: &Value) -> Result<Markup, Problem> {
    let bundle = file(v, "bundle")?;
    let answer = api.call("/api/v1/verify/verify-bundle", json!({"bundle": STANDARD.encode(bundle)})).await?;
    let result = answer.get("result").filter(|r| r.is_object()).unwrap_or(&answer);
    Ok(html! {
        div.result data-state="ok" {
            (verdict(ctx, result, Some("bundle-result")))
            (fields(ctx, &answer))
        }
    })
}

async fn export_bundle(api: &Api, v: &Value) -> Result<http::Response<Full<Bytes>>, Problem> {
    let req = json!({
        "ref": {"issuing_zone": s(v, "zone"), "record_id": s(v, "id")},
        "recognising_zone": s(v, "recognising_zone"),
        "purpose": s(v, "purpose"),
    });
    let answer = api.call("/api/v1/verify/export-bundle", req).await?;
    let env = answer
        .get("bundle")
        .and_then(envelope_from_json)
        .ok_or_else(|| Problem::new(Reason::Internal, "the answer holds no bundle"))?;
    let name: String = format!("{}-{}.bundle", s(v, "zone"), s(v, "id"))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    let mut r = respond(200, Bytes::from(env.encode_to_vec()), "application/octet-stream");
    let disposition = http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| Problem::new(Reason::Internal, e.to_string()))?;
    r.headers_mut().insert(http::header::CONTENT_DISPOSITION, disposition);
    Ok(r)
}

/// Rows in one part the page sends (the page sends 1,000).
const MAX_PART_ROWS: usize = 1000;

/// One part of a CSV file (its header line first, `first_line` the header's line number in the
/// file): checked like `ftzctl data import` does, then imported; JSON in, JSON out, so the page
/// can show its progress part by part.
async fn import_rows(api: &Api, v: &Value) -> Result<http::Response<Full<Bytes>>, Problem> {
    // Only an issuer may have a file checked: asked first, as every call is (role, rate).
    api.call("/api/v1/issuer/list-issuing-keys", json!({})).await?;
    let first_line = n(v, "first_line").max(1) as u64;
    let csv = s(v, "csv");
    if csv.lines().count() > MAX_PART_ROWS + 1 {
        return Err(Problem::new(Reason::InvalidArgument, format!("a part holds at most {MAX_PART_ROWS} rows")));
    }
    let rows = ftz_policy::rows::parse_csv(csv.as_bytes(), first_line).map_err(|bad| {
        Problem::new(Reason::InvalidArgument, format!("{} bad row(s), nothing imported: {}", bad.len(), bad.join("; ")))
    })?;
    if v.get("check_only").and_then(Value::as_bool).unwrap_or(false) {
        return json_response(&json!({"checked": rows.len()}));
    }
    let answer = api.call_message("/api/v1/issuer/import-rows", &ftz_proto::ImportRowsRequest { rows }).await?;
    json_response(&answer)
}

fn json_response(v: &Value) -> Result<http::Response<Full<Bytes>>, Problem> {
    Ok(respond(200, Bytes::from(serde_json::to_vec(v).unwrap_or_default()), "application/json"))
}

async fn cross_check(ctx: &Ctx, api: &Api, v: &Value) -> Result<Markup, Problem> {
    let answer = api.call("/api/v1/audit/cross-check", v.get("request").cloned().unwrap_or_default()).await?;
    let verified = answer.get("verified").and_then(Value::as_bool).unwrap_or(false);
    let lists: Vec<(&String, &Vec<Value>)> = answer
        .as_object()
        .map(|o| o.iter().filter_map(|(k, x)| x.as_array().filter(|a| !a.is_empty()).map(|a| (k, a))).collect())
        .unwrap_or_default();
    Ok(html! {
        div.result data-state=(if verified { "ok" } else { "failed" }) {
            h2 {
                @if verified { "✔ " (ctx.t(T::CrossVerified)) } @else { "✘ " (ctx.t(T::CrossNotVerified)) }
                " · " (s(&answer, "zone")) " ⇄ " (s(&answer, "other_zone"))
            }
            p {
                (ctx.t(T::InBoth)) ": " strong { (n(&answer, "in_both")) } " · "
                (ctx.t(T::OnlyHere)) ": " strong { (n(&answer, "only_here_count")) } " · "
                (ctx.t(T::OnlyThere)) ": " strong { (n(&answer, "only_there_count")) }
            }
            (fields(ctx, &answer))
            @for (key, xs) in lists {
                h3 { (key) " (" (xs.len()) ")" }
                ul { @for x in xs {
                    li { @match x { Value::String(t) => (t), o => { code { (n(o, "index")) } " " (s(o, "summary")) } } }
                } }
            }
        }
    })
}
