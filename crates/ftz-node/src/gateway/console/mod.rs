//! The web console: server-rendered pages for each role, at `/` on the HTTPS listener.
//!
//! A page has no data path of its own: it calls the same gRPC methods as the JSON API
//! (`api::Api`, in-process, with the browser's TLS identity), so a page cannot show what the
//! caller's role may not read, and a refusal is the same reason code, rendered as a page. The
//! little JavaScript there is lives in files of its own under `/static/` (the Content-Security
//! Policy allows no inline script); everything a user typed is escaped by the templates (maud
//! escapes every interpolation). Pages only read; what changes state is a `POST` of JSON from
//! the page's script to the JSON API (or to `/console/...` for file uploads), which another
//! site cannot send (`gateway::cross_origin`).

use bytes::Bytes;
use http_body_util::Full;
use maud::{DOCTYPE, Markup, html};

use super::{Gateway, problem::Problem};
use crate::conn::ConnInfo;

mod admin;
mod api;
mod assets;
mod audit;
mod charts;
mod enterprise;
mod fmt;
mod i18n;
mod issuer;
mod uploads;

pub(crate) use api::Api;
use i18n::{Lang, T};

/// What a page knows of its request.
pub(crate) struct Ctx {
    pub lang: Lang,
    pub zone: String,
    /// `ftz://<zone>/<role>/<name>`, for display only: who may do what was decided by the
    /// authentication layer the page's calls go through.
    pub who: String,
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Ctx {
    pub(crate) fn t(&self, t: T) -> &'static str {
        t.in_(self.lang)
    }

    /// A query parameter, trimmed; empty when absent.
    pub(crate) fn q(&self, key: &str) -> &str {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).unwrap_or("")
    }
}

/// A page: its content, or the refusal it is (rendered in the caller's language).
pub(crate) enum Page {
    Body(Markup),
    Refused(Problem),
}

impl Page {
    pub(crate) fn ok(body: Markup) -> Self {
        Page::Body(body)
    }
}

impl From<Problem> for Page {
    fn from(p: Problem) -> Self {
        Page::Refused(p)
    }
}

/// Serves a console path (anything outside `/api/`).
pub(super) async fn handle(
    gw: &Gateway,
    req: http::Request<hyper::body::Incoming>,
    info: ConnInfo,
) -> Result<http::Response<Full<Bytes>>, Problem> {
    let path = req.uri().path().to_string();
    if let Some(asset) = path.strip_prefix("/static/") {
        gw.authenticated(info).await?;
        return assets::serve(asset);
    }
    if path.starts_with("/console/") {
        return uploads::handle(gw, req, info).await;
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return Err(Problem::http(ftz_client::HttpRefusal::MethodNotAllowed, "console pages are read with GET"));
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let query_lang = query.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.clone());
    let lang = Lang::of(req.headers(), query_lang.as_deref());
    let who = info
        .tls
        .peer_certs()
        .and_then(|c| c.first().and_then(|c| ftz_pki::identity_of(c).ok()))
        .map(|c| c.identity.to_string())
        .unwrap_or_default();
    let mut ctx = Ctx { lang, zone: gw.zone.clone(), who: String::new(), path: path.clone(), query };
    let cross_site =
        matches!(req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()), Some("cross-site" | "same-site"));

    let authenticated = gw.authenticated(info.clone()).await;
    if authenticated.is_ok() {
        // Shown only once the node has accepted the certificate: a refused one names no one.
        ctx.who = who;
    }
    let page = match authenticated {
        Err(p) => Page::from(p),
        // A page's calls act with the browser's certificate: a link from another site opens a
        // page that asks first, and calls nothing.
        Ok(()) if cross_site && path != "/" => confirm_page(&ctx, req.uri()),
        Ok(()) => {
            let api = Api::new(gw.grpc.clone(), info);
            route(&ctx, &api, &path).await
        }
    };
    let mut resp = render(&ctx, page);
    if let Some(l) = query_lang.as_deref().and_then(Lang::parse) {
        let cookie = format!("ftz_lang={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=31536000", l.code());
        if let Ok(v) = http::HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(http::header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

async fn route(ctx: &Ctx, api: &Api, path: &str) -> Page {
    let r = match path {
        "/" => Ok(home(ctx)),
        "/verify" => enterprise::verify(ctx, api).await,
        "/lot" => enterprise::lot(ctx, api).await,
        "/audit" => audit::log(ctx, api).await,
        "/audit/charts" => charts::page(ctx, api).await,
        "/audit/witnesses" => audit::witnesses(ctx, api).await,
        "/audit/equivocations" => audit::equivocations(ctx, api).await,
        "/audit/cross-check" => audit::cross_check(ctx, api).await,
        "/audit/registry" => audit::registry(ctx, api).await,
        "/admin" => admin::overview(ctx, api).await,
        "/admin/install" => admin::install(ctx, api).await,
        "/issuer" => issuer::page(ctx, api).await,
        p => match p.strip_prefix("/audit/entry/").map(str::parse::<u64>) {
            Some(Ok(index)) => audit::entry(ctx, api, index).await,
            _ => Err(Problem::http(ftz_client::HttpRefusal::NotFound, format!("the console has no page {p}"))),
        },
    };
    r.unwrap_or_else(Page::from)
}

fn home(ctx: &Ctx) -> Page {
    let card = |nav: &str, href: &str, title: T, text: T| {
        html! {
            a.card data-nav=(nav) href=(href) { h2 { (ctx.t(title)) } p { (ctx.t(text)) } }
        }
    };
    Page::ok(html! {
        h1 { (ctx.t(T::Console)) }
        p { (ctx.t(T::HomeIntro)) }
        div.cards {
            (card("verify", "/verify", T::Verify, T::ForEnterprise))
            (card("audit", "/audit", T::Audit, T::ForAuditor))
            (card("admin", "/admin", T::Admin, T::ForAdmin))
            (card("issuer", "/issuer", T::Issuer, T::ForIssuer))
        }
    })
}

fn confirm_page(ctx: &Ctx, uri: &http::Uri) -> Page {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("{}{query}", local_path(uri.path()));
    Page::ok(html! {
        section.refusal data-reason="CROSS_ORIGIN" {
            h1 { (ctx.t(T::CrossSite)) }
            p { a.button href=(target) { (ctx.t(T::OpenPage)) } }
        }
    })
}

/// The layout around a page, or the refusal page.
fn render(ctx: &Ctx, page: Page) -> http::Response<Full<Bytes>> {
    let (status, inner) = match page {
        Page::Body(m) => (200, m),
        Page::Refused(p) => (p.status, refusal(ctx, &p.reason, &p.detail)),
    };
    let mut r = super::respond(status, Bytes::from(layout(ctx, inner).into_string()), HTML);
    r.headers_mut().insert(http::header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static(CSP));
    r
}

pub(crate) const HTML: &str = "text/html; charset=utf-8";

/// Scripts and styles from this origin's files only, no inline script, no framing, forms and
/// fetches to this origin only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn refusal(ctx: &Ctx, reason: &str, detail: &str) -> Markup {
    html! {
        section.refusal data-reason=(reason) {
            h1 { (ctx.t(T::Refused)) }
            dl {
                dt { (ctx.t(T::Reason)) } dd { code { (reason) } }
                dt { (ctx.t(T::Detail)) } dd { (detail) }
            }
            p { (ctx.t(T::RefusedHint)) }
        }
    }
}

fn layout(ctx: &Ctx, main: Markup) -> Markup {
    let nav = [
        ("verify", "/verify", T::Verify),
        ("lot", "/lot", T::Lot),
        ("audit", "/audit", T::Audit),
        ("admin", "/admin", T::Admin),
        ("issuer", "/issuer", T::Issuer),
    ];
    let switch = |l: Lang| {
        let mut q: Vec<(String, String)> = ctx.query.iter().filter(|(k, _)| k != "lang").cloned().collect();
        q.push(("lang".into(), l.code().into()));
        format!("{}?{}", local_path(&ctx.path), fmt::query_string(&q))
    };
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (ctx.t(T::Console)) " · " (ctx.zone) }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body data-lang=(ctx.lang.code()) {
                header {
                    a.brand href="/" data-nav="home" { "ftz-exchange" }
                    span.zone { (ctx.t(T::Zone)) ": " strong { (ctx.zone) } }
                    nav {
                        @for (key, href, text) in nav {
                            a data-nav=(key) href=(href) class=[(ctx.path.starts_with(href)).then_some("active")] { (ctx.t(text)) }
                        }
                    }
                    span.lang {
                        a data-lang="zh" href=(switch(Lang::Zh)) lang="zh-CN" { "中文" }
                        " | "
                        a data-lang="en" href=(switch(Lang::En)) lang="en" { "English" }
                    }
                }
                @if !ctx.who.is_empty() {
                    p.who { (ctx.t(T::SignedInAs)) ": " code { (ctx.who) } }
                }
                main { (main) }
                footer { (ctx.t(T::TimeFormat)) " · ftz-exchange " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// A path of this node to link to: `//host/x` or `/\\host` would leave it.
fn local_path(p: &str) -> String {
    format!("/{}", p.trim_start_matches(['/', '\\']))
}

/// `a=1&b=x%20y` → pairs (`+` is a space).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_user_typed_is_escaped_and_the_language_switch_keeps_the_query() {
        let ctx = Ctx {
            lang: Lang::En,
            zone: "hainan".into(),
            who: "ftz://hainan/enterprise/<b>".into(),
            path: "/verify".into(),
            query: parse_query("id=%3Cscript%3Ealert(1)%3C%2Fscript%3E&lang=zh"),
        };
        let page = html! { p { (ctx.q("id")) } };
        let doc = layout(&ctx, page).into_string();
        assert!(!doc.contains("<script>alert"), "{doc}");
        assert!(doc.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(doc.contains("ftz://hainan/enterprise/&lt;b&gt;"));
        assert!(doc.contains(r#"<html lang="en">"#));
        assert!(doc.contains(r#"href="/verify?id=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&amp;lang=zh""#), "{doc}");
        // No inline script: every script element names a file.
        assert!(doc.matches("<script").count() == doc.matches("<script src=").count());
        // A path that would lead off the node is linked as one of its own.
        assert_eq!(local_path("//evil.example/x"), "/evil.example/x");
        assert_eq!(local_path("/\\evil.example"), "/evil.example");
        assert_eq!(local_path("/audit"), "/audit");
        let r = render(&ctx, Page::from(Problem::new(ftz_core::Reason::RoleNotAllowed, "<i>no</i>")));
        assert_eq!(r.status(), 403);
    }
}
