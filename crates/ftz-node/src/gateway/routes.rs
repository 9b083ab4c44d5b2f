//! The JSON API's routes, derived from the protobuf descriptors of the gRPC services: every
//! unary method of the services a zone's users call is `POST /api/v1/<service>/<method>` (and
//! `GET` with query parameters for the methods that only read). A route *is* its gRPC method:
//! the call goes through the same authentication, authorization table, rate limits and service
//! code, so the HTTP surface cannot allow what gRPC refuses, and cannot drift from it.

use std::{collections::BTreeMap, sync::OnceLock};

use prost_reflect::{DescriptorPool, MethodDescriptor};

/// The services users reach over HTTP. The node-to-node service stays gRPC only.
const SERVICES: [&str; 4] = ["ftz.v1.Verify", "ftz.v1.Issuer", "ftz.v1.Admin", "ftz.v1.Audit"];

/// Method name prefixes that only read: these may also be called with `GET`.
const READERS: [&str; 4] = ["Get", "List", "Find", "Explain"];

#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// `/api/v1/verify/verify-record`
    pub path: String,
    /// `/ftz.v1.Verify/VerifyRecord`
    pub grpc_path: String,
    pub method: MethodDescriptor,
    pub get: bool,
}

pub(crate) struct Routes {
    pub pool: DescriptorPool,
    pub by_path: BTreeMap<String, Route>,
}

/// The routes, built once from the embedded descriptor set.
pub(crate) fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        // The descriptor set is compiled into ftz-proto; failing to decode it is a build defect.
        let mut pool =
            DescriptorPool::decode(ftz_proto::v1::FILE_DESCRIPTOR_SET).unwrap_or_else(|_| DescriptorPool::new());
        let _ = pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut by_path = BTreeMap::new();
        for name in SERVICES {
            let Some(service) = pool.get_service_by_name(name) else { continue };
            let short = service.name().to_ascii_lowercase();
            for m in service.methods() {
                if m.is_client_streaming() || m.is_server_streaming() {
                    continue;
                }
                let path = format!("/api/v1/{short}/{}", kebab(m.name()));
                let grpc_path = format!("/{}/{}", service.full_name(), m.name());
                let get = READERS.iter().any(|p| m.name().starts_with(p));
                by_path.insert(path.clone(), Route { path, grpc_path, method: m, get });
            }
        }
        Routes { pool, by_path }
    })
}

/// The gRPC health check, which any authenticated caller may make: not an API route, but how
/// the gateway asks the authentication layer whether a caller is one the node serves.
pub(crate) fn health_route() -> Option<Route> {
    let m = routes().pool.get_service_by_name("grpc.health.v1.Health")?.methods().find(|m| m.name() == "Check")?;
    Some(Route { path: String::new(), grpc_path: "/grpc.health.v1.Health/Check".into(), method: m, get: true })
}

/// `VerifyRecord` → `verify-record`.
pub(crate) fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_method_has_a_route_and_no_peer_method_does() {
        let r = routes();
        let v = &r.by_path["/api/v1/verify/verify-record"];
        assert_eq!((v.grpc_path.as_str(), v.get), ("/ftz.v1.Verify/VerifyRecord", false));
        assert!(r.by_path["/api/v1/admin/get-node-status"].get);
        assert!(r.by_path.values().all(|r| !r.grpc_path.starts_with("/ftz.v1.Peer/")));
        // Every route's gRPC method is one the authorization table knows.
        for route in r.by_path.values() {
            assert!(crate::auth::has_audience(&route.grpc_path), "{}", route.grpc_path);
        }
        assert!(r.by_path.len() > 30, "{} routes", r.by_path.len());
        assert_eq!(kebab("ListRegistryHistory"), "list-registry-history");
    }
}
