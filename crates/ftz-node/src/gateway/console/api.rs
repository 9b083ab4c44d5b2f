//! A page's calls: JSON in, JSON out, through the same in-process gRPC route as the JSON API
//! (`transcode`), as the browser's caller.

use serde_json::Value;

use super::super::{Grpc, problem::Problem, routes::routes, transcode};
use crate::conn::ConnInfo;

pub(crate) struct Api {
    grpc: Grpc,
    info: ConnInfo,
}

impl Api {
    pub(crate) fn new(grpc: Grpc, info: ConnInfo) -> Self {
        Self { grpc, info }
    }

    /// Calls the JSON API route `path` (`/api/v1/audit/list-entries`) with `request`.
    pub(crate) async fn call(&self, path: &str, request: Value) -> Result<Value, Problem> {
        let route = route(path)?;
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let msg = transcode::request_from_json(route, &body)?;
        transcode::call(self.grpc.clone(), self.info.clone(), route, msg).await
    }

    /// The same with a request the console built as its message (no field written twice).
    pub(crate) async fn call_message(&self, path: &str, request: &impl prost::Message) -> Result<Value, Problem> {
        let route = route(path)?;
        let msg = prost_reflect::DynamicMessage::decode(route.method.input(), request.encode_to_vec().as_slice())
            .map_err(|e| Problem::new(ftz_core::Reason::Internal, format!("{path}: {e}")))?;
        transcode::call(self.grpc.clone(), self.info.clone(), route, msg).await
    }
}

fn route(path: &str) -> Result<&'static crate::gateway::routes::Route, Problem> {
    routes().by_path.get(path).ok_or_else(|| {
        Problem::new(ftz_core::Reason::Internal, format!("the console calls {path}, which is not a route"))
    })
}
