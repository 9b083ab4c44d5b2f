//! Server reflection in both versions clients speak (v1; v1alpha, the only one Python grpcio's
//! reflection client and older grpcurl know), for any authenticated caller, and only for one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::Role;
use ftz_tests::Cluster;
use tonic_reflection::pb::{v1, v1alpha};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_in_v1_and_v1alpha() {
    let c = Cluster::start(&["shanghai"]).await;
    let channel = c.local.user_channel("shanghai", Role::Enterprise).unwrap();

    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut answers = client.server_reflection_info(futures_util::stream::iter(vec![req])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1: not a list of services")
    };
    assert!(list.service.iter().any(|s| s.name == "ftz.v1.Verify"), "{list:?}");

    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut answers = client.server_reflection_info(futures_util::stream::iter(vec![req])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha: not a list of services")
    };
    assert!(list.service.iter().any(|s| s.name == "ftz.v1.Audit"), "{list:?}");

    // Without a certificate: refused, as every call.
    let anon = c.channel_as("shanghai", None);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let refused = v1alpha::server_reflection_client::ServerReflectionClient::new(anon)
        .server_reflection_info(futures_util::stream::iter(vec![req]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    c.shutdown().await;
}
