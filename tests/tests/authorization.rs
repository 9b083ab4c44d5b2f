//! The authorisation matrix: every RPC of the API × every kind of caller × the expected
//! outcome, in one table, walked against a running node. Every method is called (with an
//! empty request) by every caller; "passes" means the request reached the service (whatever
//! the service then said about the empty request), a refusal must carry the table's reason.
//! The methods come from the API's own descriptor set, so a new RPC is covered as it is added,
//! and a new service fails the test until the table says who may call it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::{Reason, Role, ZoneId};
use ftz_tests::{Cluster, reason_of};
use prost::Message;
use tonic::transport::Channel;

/// Who calls shanghai's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Issuer,
    Enterprise,
    Auditor,
    /// Hainan's node.
    PeerNode,
    /// A node certificate of shanghai itself.
    OwnNode,
    /// Hainan's admin.
    ForeignUser,
    NoCertificate,
}

const CALLERS: [Caller; 8] = [
    Caller::Admin,
    Caller::Issuer,
    Caller::Enterprise,
    Caller::Auditor,
    Caller::PeerNode,
    Caller::OwnNode,
    Caller::ForeignUser,
    Caller::NoCertificate,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passes,
    Refused(Reason),
}

use Outcome::{Passes, Refused};
use Reason::{ForeignUser, MethodNotAllowed, NoClientCertificate, NotAPeer, NotAUser, RoleNotAllowed};

/// The table: for each service, the outcome for each caller, in the order of [`CALLERS`].
const MATRIX: &[(&str, [Outcome; 8])] = &[
    (
        "ftz.v1.Peer",
        [
            Refused(NotAPeer),
            Refused(NotAPeer),
            Refused(NotAPeer),
            Refused(NotAPeer),
            Passes,
            Refused(NotAPeer),
            Refused(NotAPeer),
            Refused(NoClientCertificate),
        ],
    ),
    (
        "ftz.v1.Admin",
        [
            Passes,
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Refused(NotAUser),
            Refused(NotAUser),
            Refused(ForeignUser),
            Refused(NoClientCertificate),
        ],
    ),
    (
        "ftz.v1.Issuer",
        [
            Refused(RoleNotAllowed),
            Passes,
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Refused(NotAUser),
            Refused(NotAUser),
            Refused(ForeignUser),
            Refused(NoClientCertificate),
        ],
    ),
    (
        "ftz.v1.Verify",
        [
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Passes,
            Refused(RoleNotAllowed),
            Refused(NotAUser),
            Refused(NotAUser),
            Refused(ForeignUser),
            Refused(NoClientCertificate),
        ],
    ),
    (
        "ftz.v1.Audit",
        [
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Refused(RoleNotAllowed),
            Passes,
            Refused(NotAUser),
            Refused(NotAUser),
            Refused(ForeignUser),
            Refused(NoClientCertificate),
        ],
    ),
    (
        "grpc.health.v1.Health",
        [Passes, Passes, Passes, Passes, Passes, Passes, Refused(ForeignUser), Refused(NoClientCertificate)],
    ),
    (
        // A method no rule names.
        "ftz.v1.Unknown",
        [
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(MethodNotAllowed),
            Refused(NoClientCertificate),
        ],
    ),
];

/// Refusals that come from authentication or authorisation rather than from a service.
const AUTH_REASONS: [Reason; 9] = [
    NoClientCertificate,
    NotAPeer,
    NotAUser,
    ForeignUser,
    RoleNotAllowed,
    MethodNotAllowed,
    Reason::UntrustedCertificate,
    Reason::UnknownZone,
    Reason::BadCertificateIdentity,
];

/// Any message: requests go out empty, answers are read and ignored.
#[derive(Clone, PartialEq, Message)]
struct Empty {}

/// Every unary method of the API, as `/package.Service/Method` paths.
fn unary_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(ftz_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for file in &set.file {
        for s in &file.service {
            for m in &s.method {
                if !m.client_streaming() && !m.server_streaming() {
                    out.push(format!("/{}.{}/{}", file.package(), s.name(), m.name()));
                }
            }
        }
    }
    out.push("/grpc.health.v1.Health/Check".into());
    out.push("/ftz.v1.Unknown/Anything".into());
    out
}

async fn call(channel: Channel, path: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    grpc.unary(tonic::Request::new(Empty {}), path, codec).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_caller_gets_the_outcome_the_table_says() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let sh = c.zone("shanghai");
    let hn = c.zone("hainan");
    let peer_node = hn.ca.issue_node(&hn.id, &[], hn.validity).unwrap();
    let own_node = sh.ca.issue_node(&ZoneId::new("shanghai").unwrap(), &[], sh.validity).unwrap();
    let channel = |caller: Caller| match caller {
        Caller::Admin => c.user("shanghai", Role::Admin),
        Caller::Issuer => c.user("shanghai", Role::Issuer),
        Caller::Enterprise => c.user("shanghai", Role::Enterprise),
        Caller::Auditor => c.user("shanghai", Role::Auditor),
        Caller::PeerNode => c.channel_as("shanghai", Some(&peer_node)),
        Caller::OwnNode => c.channel_as("shanghai", Some(&own_node)),
        Caller::ForeignUser => c.user_at("hainan", Role::Admin, "shanghai"),
        Caller::NoCertificate => c.channel_as("shanghai", None),
    };

    let methods = unary_methods();
    assert!(methods.len() > 40, "{} methods found", methods.len());
    let mut checked = 0;
    let mut wrong = Vec::new();
    for path in &methods {
        let service = path[1..].split('/').next().unwrap();
        let row = MATRIX
            .iter()
            .find(|(s, _)| *s == service)
            .unwrap_or_else(|| panic!("service {service} is not in the authorisation table"));
        for (caller, expected) in CALLERS.iter().zip(row.1) {
            let got = match call(channel(*caller), path).await {
                Ok(()) => Passes,
                Err(s) => match reason_of(&s) {
                    Some(r) if AUTH_REASONS.contains(&r) => Refused(r),
                    _ => Passes,
                },
            };
            checked += 1;
            if got != expected {
                wrong.push(format!("{path} by {caller:?}: expected {expected:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} cells differ:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(checked, methods.len() * CALLERS.len());
    c.shutdown().await;
}
