//! The HTTPS listener beside gRPC: the JSON API under `/api/v1/`.
//!
//! It has no access rules of its own. Each route is a gRPC method (`routes`), and a call is
//! carried into the gRPC stack in-process (`transcode`) with the HTTP connection's TLS session,
//! so the same authentication code decides who the caller is and what it may do, the same rate
//! limits and refusal logging apply, and the same service code answers. Connections come through
//! the same accept loop as gRPC's (`listen`: handshake deadline, connection cap, the pool for
//! connections without an authenticated call, connections per caller). Refusals are RFC 9457
//! problem details (`problem`); the API is described by an OpenAPI 3.1 document generated from
//! the routes (`openapi`).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use ftz_client::HttpRefusal;
use ftz_core::Reason;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::transport::server::Connected;

use crate::{
    config::Limits,
    conn::ConnInfo,
    listen::{Conn, stopped},
};

mod console;
mod openapi;
mod problem;
mod routes;
mod transcode;

use problem::Problem;
pub(crate) use transcode::Grpc;

struct Gateway {
    grpc: Grpc,
    /// The node's zone, as the console's pages name it.
    zone: String,
    limits: Limits,
    openapi: Bytes,
    /// The route of the gRPC health check (see `authenticated`).
    health: Option<routes::Route>,
}

/// Serves the JSON API on every connection `incoming` yields, until shutdown.
pub(crate) fn serve(
    incoming: ReceiverStream<Result<Conn, std::io::Error>>,
    grpc: Grpc,
    zone: String,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let openapi = Bytes::from(serde_json::to_vec_pretty(&openapi::document(routes::routes())).unwrap_or_default());
    let gw = Arc::new(Gateway { grpc, zone, limits, openapi, health: routes::health_route() });
    tokio::spawn(async move {
        let mut incoming = incoming;
        let mut stop = shutdown.clone();
        loop {
            let conn = tokio::select! {
                () = stopped(&mut stop) => break,
                next = incoming.next() => match next {
                    Some(Ok(c)) => c,
                    Some(Err(_)) => continue,
                    None => break,
                },
            };
            tokio::spawn(serve_connection(conn, gw.clone(), shutdown.clone()));
        }
    });
}

/// One connection: HTTP/2 or HTTP/1.1, closed gracefully at its maximum age or at shutdown.
async fn serve_connection(conn: Conn, gw: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let info = conn.connect_info();
    let limits = &gw.limits;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.handshake_timeout_ms))
        .max_buf_size(64 * 1024);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(limits.max_concurrent_streams);
    let svc_gw = gw.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (gw, info) = (svc_gw.clone(), info.clone());
        // A refusal may come before the body is read (an unknown route, a wrong method or
        // type, a caller not yet authenticated): HTTP/1.1 cannot go on after an unread body, so
        // the answer says the connection closes (else a client sends its next request into a
        // connection about to close).
        let unread = req.version() <= http::Version::HTTP_11 && !hyper::body::Body::is_end_stream(req.body());
        async move {
            let mut r = secure(gw.handle(req, info).await);
            if unread && (r.status().is_client_error() || r.status().is_server_error()) {
                r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(r)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(conn), svc);
    tokio::pin!(connection);
    let age = tokio::time::sleep(Duration::from_millis(limits.max_connection_age_ms));
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = &mut age, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = stopped(&mut shutdown), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Headers every answer carries: HTTPS only, nothing framed or sniffed, nothing cached.
fn secure(mut r: http::Response<Full<Bytes>>) -> http::Response<Full<Bytes>> {
    let h = r.headers_mut();
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, http::HeaderValue::from_static(v));
    };
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "x-content-type-options", "nosniff");
    // The console's pages set their own (scripts and styles of this origin); nothing else runs.
    if !h.contains_key(http::header::CONTENT_SECURITY_POLICY) {
        set(h, "content-security-policy", "default-src 'none'; frame-ancestors 'none'");
    }
    set(h, "referrer-policy", "no-referrer");
    set(h, "cache-control", "no-store");
    r
}

/// An answer with its status and content type (and the headers `secure` adds to every one).
fn respond(status: u16, body: Bytes, content_type: &'static str) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

impl Gateway {
    async fn handle(&self, req: http::Request<hyper::body::Incoming>, info: ConnInfo) -> http::Response<Full<Bytes>> {
        let deadline = Duration::from_millis(self.limits.request_timeout_ms);
        match tokio::time::timeout(deadline, self.answer(req, info)).await {
            Ok(Ok(r)) => r,
            Ok(Err(p)) => p.into_response(),
            Err(_) => Problem::http(HttpRefusal::DeadlineExceeded, "the request took longer than the node allows")
                .into_response(),
        }
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
        info: ConnInfo,
    ) -> Result<http::Response<Full<Bytes>>, Problem> {
        let path = req.uri().path().to_string();
        if path == "/api/v1/openapi.json" {
            if req.method() != http::Method::GET {
                return Err(Problem::http(HttpRefusal::MethodNotAllowed, "GET the API description"));
            }
            self.authenticated(info).await?;
            return Ok(respond(200, self.openapi.clone(), "application/json"));
        }
        // Another site's page may link or post here with the browser's certificate: no API call
        // it makes is carried out (some reads act: a refreshed peer list pings every peer), and
        // no console upload; console pages ask first (`console`).
        if req.method() == http::Method::POST || path.starts_with("/api/") {
            cross_origin(&req)?;
        }
        if !path.starts_with("/api/") {
            return console::handle(self, req, info).await;
        }
        let Some(route) = routes::routes().by_path.get(&path) else {
            return Err(Problem::http(HttpRefusal::NotFound, format!("no route {path}; see /api/v1/openapi.json")));
        };
        let msg = match *req.method() {
            http::Method::GET if route.get => transcode::request_from_query(route, req.uri().query().unwrap_or(""))?,
            http::Method::POST => transcode::request_from_json(route, &self.read_json_body(req, &info).await?)?,
            _ => {
                let allowed = if route.get { "GET or POST" } else { "POST" };
                return Err(Problem::http(HttpRefusal::MethodNotAllowed, format!("{path} takes {allowed}")));
            }
        };
        let answer = transcode::call(self.grpc.clone(), info, route, msg).await?;
        Ok(respond(200, Bytes::from(serde_json::to_vec(&answer).unwrap_or_default()), "application/json"))
    }

    /// A POST's JSON body, bounded by the message limit, read only once the caller has shown
    /// who it is.
    async fn read_json_body(
        &self,
        req: http::Request<hyper::body::Incoming>,
        info: &ConnInfo,
    ) -> Result<Bytes, Problem> {
        // A JSON content type: a page of another site cannot send it without the browser
        // asking first, so a client certificate held by the browser cannot be used by another
        // site's form (CSRF).
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(Problem::http(
                HttpRefusal::UnsupportedMediaType,
                "POST a JSON body (Content-Type: application/json)",
            ));
        }
        // No body is buffered for a connection that has not shown who it is: an outsider would
        // otherwise hold a message's worth of memory per stream it opens.
        if !info.flags.is_authenticated() {
            self.authenticated(info.clone()).await?;
        }
        let max = self.limits.max_message_bytes;
        let body = Limited::new(req.into_body(), max).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Problem::http(HttpRefusal::PayloadTooLarge, format!("the body is over {max} bytes"))
            } else {
                Problem::new(Reason::MalformedRequest, format!("the body could not be read: {e}"))
            }
        })?;
        Ok(body.to_bytes())
    }

    /// Whether the caller is one the node serves at all: the gRPC health check, which any
    /// authenticated caller may make, through the same authentication as every call.
    async fn authenticated(&self, info: ConnInfo) -> Result<(), Problem> {
        let route = self.health.as_ref().ok_or_else(|| Problem::new(Reason::Internal, "no health check"))?;
        let msg = prost_reflect::DynamicMessage::new(route.method.input());
        transcode::call(self.grpc.clone(), info, route, msg).await.map(|_| ())
    }
}

/// A POST a page of another origin sent is refused, whatever its content type: browsers name
/// the page's origin (`Origin`) and whether it is this site (`Sec-Fetch-Site`). Programs send
/// neither, and are not affected.
fn cross_origin<B>(req: &http::Request<B>) -> Result<(), Problem> {
    let h = req.headers();
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()).unwrap_or("");
    if matches!(site, "cross-site" | "same-site") {
        return Err(Problem::http(HttpRefusal::CrossOrigin, format!("a request sent by another site's page ({site})")));
    }
    if let Some(origin) = h.get(http::header::ORIGIN) {
        let host = h
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if origin.to_str().ok() != Some(format!("https://{host}").as_str()) {
            return Err(Problem::http(
                HttpRefusal::CrossOrigin,
                format!("a request from the page of {:?}, not of this node", origin.to_str().unwrap_or("?")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let req = |headers: &[(&str, &str)]| {
            let mut b = http::Request::builder().method("POST").uri("/api/v1/verify/list-zones");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        assert!(cross_origin(&req(&[])).is_ok());
        assert!(cross_origin(&req(&[("host", "127.0.0.1:9443"), ("origin", "https://127.0.0.1:9443")])).is_ok());
        assert!(cross_origin(&req(&[("sec-fetch-site", "same-origin")])).is_ok());
        let evil = cross_origin(&req(&[("host", "127.0.0.1:9443"), ("origin", "https://evil.example")])).unwrap_err();
        assert_eq!((evil.status, evil.reason.as_str()), (403, "CROSS_ORIGIN"));
        assert!(cross_origin(&req(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(cross_origin(&req(&[("host", "127.0.0.1:9443"), ("origin", "null")])).is_err());
    }
}
