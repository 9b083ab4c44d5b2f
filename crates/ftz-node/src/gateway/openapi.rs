//! The OpenAPI 3.1 document of the JSON API, generated from the same routes and protobuf
//! descriptors the API serves (so it cannot drift from them): request and answer schemas are
//! the proto3 JSON mapping of the messages, as the API reads and writes them (proto field names,
//! 64-bit integers as strings, bytes as base64, enums by name, every field present in answers).

use std::collections::BTreeSet;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::routes::Routes;

/// The document, built once.
pub(crate) fn document(routes: &Routes) -> Value {
    let mut paths = Map::new();
    let mut wanted: Vec<MessageDescriptor> = Vec::new();
    for r in routes.by_path.values() {
        let input = r.method.input();
        let output = r.method.output();
        let service = r.grpc_path.trim_start_matches('/').split('/').next().unwrap_or_default().to_string();
        let tag = service.trim_start_matches("ftz.v1.").to_string();
        let responses = json!({
            "200": {"description": "The answer.", "content": {"application/json": {"schema": reference(&output)}}},
            "default": {"description": "A refusal: RFC 9457 problem details with the stable reason code.",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        });
        // One operation of the route: POST with a JSON body, or GET with query parameters.
        let operation = |id: String, summary: String, (key, request): (&str, Value)| {
            let mut op = json!({"operationId": id, "tags": [tag], "summary": summary, "responses": responses});
            op[key] = request;
            op
        };
        let mut item = Map::new();
        let body = json!({"required": false, "content": {"application/json": {"schema": reference(&input)}}});
        item.insert(
            "post".into(),
            operation(
                format!("{tag}_{}", r.method.name()),
                format!("{} ({})", r.method.name(), r.grpc_path),
                ("requestBody", body),
            ),
        );
        if r.get {
            let params: Vec<Value> = input
                .fields()
                .filter(|f| !matches!(f.kind(), Kind::Message(_)) && !f.is_map())
                .map(|f| {
                    let schema = if f.is_list() { json!({"type": "array", "items": scalar(&f)}) } else { scalar(&f) };
                    json!({"name": f.name(), "in": "query", "required": false, "schema": schema,
                           "style": "form", "explode": true})
                })
                .collect();
            item.insert(
                "get".into(),
                operation(
                    format!("{tag}_{}_get", r.method.name()),
                    format!("{} ({}), fields as query parameters", r.method.name(), r.grpc_path),
                    ("parameters", Value::Array(params)),
                ),
            );
        }
        paths.insert(r.path.clone(), Value::Object(item));
        wanted.push(input);
        wanted.push(output);
    }
    let mut schemas = Map::new();
    let mut seen = BTreeSet::new();
    while let Some(m) = wanted.pop() {
        if !seen.insert(m.full_name().to_string()) {
            continue;
        }
        let mut props = Map::new();
        for f in m.fields() {
            props.insert(f.name().to_string(), field_schema(&f, &mut wanted));
        }
        schemas.insert(schema_name(&m), json!({"type": "object", "properties": props, "additionalProperties": false}));
    }
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "required": ["type", "title", "status", "detail", "reason"],
            "properties": {
                "type": {"type": "string", "description": "urn:ftz:reason:<REASON>"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "reason": {"type": "string", "description": "The stable reason code (docs/reason-codes.md)."},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ftz-exchange node JSON API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every route is the gRPC method it names, behind the same client-certificate authentication, roles, limits and refusals. Refusals are RFC 9457 problem details carrying the stable reason codes of docs/reason-codes.md.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn schema_name(m: &MessageDescriptor) -> String {
    m.full_name().trim_start_matches("ftz.v1.").replace('.', "_")
}

fn reference(m: &MessageDescriptor) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(m))})
}

fn field_schema(f: &FieldDescriptor, wanted: &mut Vec<MessageDescriptor>) -> Value {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else { return json!({"type": "object"}) };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": field_schema(&value, wanted)});
    }
    let one = match f.kind() {
        Kind::Message(m) => {
            wanted.push(m.clone());
            reference(&m)
        }
        _ => scalar(f),
    };
    if f.is_list() { json!({"type": "array", "items": one}) } else { one }
}

fn scalar(f: &FieldDescriptor) -> Value {
    match f.kind() {
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "pattern": "^-?[0-9]+$"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "pattern": "^[0-9]+$"}),
        Kind::Float | Kind::Double => json!({"type": "number"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()})
        }
        Kind::Message(_) => json!({"type": "object"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::routes;

    #[test]
    fn the_document_names_every_route_and_every_schema_it_refers_to() {
        let doc = document(routes());
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), routes().by_path.len());
        assert!(paths["/api/v1/verify/verify-record"]["post"].is_object());
        assert!(paths["/api/v1/admin/get-node-status"]["get"].is_object());
        // Every $ref resolves.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let entries = &schemas["ListEntriesRequest"]["properties"];
        assert_eq!(entries["limit"]["type"], "integer");
        assert_eq!(entries["from_ms"]["type"], "string");
    }
}
