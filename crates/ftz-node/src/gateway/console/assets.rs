//! The console's static files, compiled into the binary (no build step, nothing to install):
//! the style sheet, the pages' script, and the proof checker (a script of its own, so that an
//! auditor can read exactly what checks the proof).

use bytes::Bytes;
use http_body_util::Full;

use crate::gateway::problem::Problem;

const FILES: [(&str, &str, &str); 3] = [
    ("console.css", "text/css; charset=utf-8", include_str!("static/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("static/console.js")),
    ("proof.js", "text/javascript; charset=utf-8", include_str!("static/proof.js")),
];

pub(super) fn serve(name: &str) -> Result<http::Response<Full<Bytes>>, Problem> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| Problem::http(ftz_client::HttpRefusal::NotFound, format!("no static file {name}")))?;
    Ok(crate::gateway::respond(200, Bytes::from_static(body.as_bytes()), content_type))
}
