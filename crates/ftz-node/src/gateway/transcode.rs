//! One JSON call as the gRPC call it is: the JSON body becomes the method's request message
//! (proto3 JSON mapping, from the descriptors), the request goes in-process through the very
//! tower stack the gRPC listener serves (authentication, authorization, rate limits, services)
//! with the HTTP connection's TLS identity, and the answer, or the refusal, comes back as JSON.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ftz_core::Reason;
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value};
use tower::ServiceExt;

use super::{problem::Problem, routes::Route};
use crate::conn::ConnInfo;

/// The gRPC stack, as a cloneable service.
pub(crate) type Grpc =
    tower::util::BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, Infallible>;

/// The JSON a request body holds, as the route's request message.
pub(crate) fn request_from_json(route: &Route, body: &[u8]) -> Result<DynamicMessage, Problem> {
    let input = route.method.input();
    let body = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    let msg = DynamicMessage::deserialize_with_options(input.clone(), &mut de, &DeserializeOptions::new())
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| {
            Problem::new(Reason::MalformedRequest, format!("the body is not a {} in JSON: {e}", input.name()))
        })?;
    Ok(msg)
}

/// The query string of a GET as the route's request message: each parameter names a scalar
/// field (repeated: given more than once).
pub(crate) fn request_from_query(route: &Route, query: &str) -> Result<DynamicMessage, Problem> {
    let input = route.method.input();
    let mut obj = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        let field = input
            .get_field_by_name(&k)
            .or_else(|| input.get_field_by_json_name(&k))
            .ok_or_else(|| Problem::new(Reason::InvalidArgument, format!("{} has no field {k:?}", input.name())))?;
        let value = match field.kind() {
            Kind::Bool => match v.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(Problem::new(Reason::InvalidArgument, format!("{k} is true or false, not {v:?}"))),
            },
            Kind::Message(_) => {
                return Err(Problem::new(Reason::InvalidArgument, format!("{k} is a message: POST it as JSON")));
            }
            _ => Value::String(v),
        };
        if field.is_list() {
            obj.entry(field.name().to_string()).or_insert_with(|| Value::Array(vec![]));
            if let Some(Value::Array(a)) = obj.get_mut(field.name()) {
                a.push(value);
            }
        } else {
            obj.insert(field.name().to_string(), value);
        }
    }
    let text = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
    request_from_json(route, &text)
}

/// A query-string component: `+` is a space, then %-escapes.
fn decode(s: &str) -> Result<String, Problem> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Problem::new(Reason::InvalidArgument, "the query is not UTF-8"))
}

/// Calls `route`'s gRPC method with `msg` over `grpc`, as the caller of connection `conn`.
pub(crate) async fn call(grpc: Grpc, conn: ConnInfo, route: &Route, msg: DynamicMessage) -> Result<Value, Problem> {
    let encoded = msg.encode_to_vec();
    let mut frame = BytesMut::with_capacity(encoded.len() + 5);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
    frame.put_slice(&encoded);
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(route.grpc_path.as_str())
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(Full::new(frame.freeze())))
        .map_err(|e| Problem::from(crate::error::ApiError::internal(e.to_string())))?;
    req.extensions_mut().insert(conn);
    let Ok(resp) = grpc.oneshot(req).await;
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| Problem::from(crate::error::ApiError::internal(format!("reading the answer: {e}"))))?;
    let mut headers = parts.headers;
    if let Some(trailers) = collected.trailers() {
        headers.extend(trailers.clone());
    }
    let data = collected.to_bytes();
    let ok = headers.get("grpc-status").is_none_or(|v| v.as_bytes() == b"0");
    if !ok {
        let status = tonic::Status::from_header_map(&headers)
            .unwrap_or_else(|| tonic::Status::internal("an answer without a status"));
        return Err(Problem::from_status(&status));
    }
    answer_to_json(route.method.output(), data)
}

fn answer_to_json(output: MessageDescriptor, mut data: Bytes) -> Result<Value, Problem> {
    if data.len() < 5 {
        return Err(Problem::from(crate::error::ApiError::internal("an answer without a message")));
    }
    data.advance(1);
    let len = data.get_u32() as usize;
    let msg = DynamicMessage::decode(output, data.slice(..len.min(data.len())))
        .map_err(|e| Problem::from(crate::error::ApiError::internal(format!("the answer does not decode: {e}"))))?;
    let opts = SerializeOptions::new().skip_default_fields(false).use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| Problem::from(crate::error::ApiError::internal(format!("the answer as JSON: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::routes;

    #[test]
    fn json_and_query_strings_become_the_request_message() {
        let r = &routes().by_path["/api/v1/audit/list-entries"];
        let m = request_from_query(r, "limit=5&decision=refused&zone=hainan%20x").unwrap();
        let req = ftz_proto::ListEntriesRequest::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!((req.limit, req.decision.as_str(), req.zone.as_str()), (5, "refused", "hainan x"));
        let bad = request_from_json(r, br#"{"limit": "many"}"#).unwrap_err();
        assert_eq!((bad.status, bad.reason.as_str()), (400, "MALFORMED_REQUEST"));
        assert_eq!(request_from_query(r, "nosuch=1").unwrap_err().reason, "INVALID_ARGUMENT");
        assert_eq!(request_from_json(r, b"{} trailing").unwrap_err().reason, "MALFORMED_REQUEST");
        assert!(request_from_json(r, b"  ").is_ok());
    }
}
