//! What a node writes to its log under load: at the default level (`info`), nothing per call
//! (a line per verification filled a disk in days); with the access log on
//! (`ftz_node::access=debug`), one line per call with its method, caller and status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use ftz_proto::{
    IssueCertificationRequest, RecordRef, VerifyRecordRequest, verify_client::VerifyClient, verify_record_request,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification};

/// Log lines, as the node's subscriber writes them.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_not_logged_at_the_default_level_and_the_access_log_has_one_line_each() {
    let lines = Lines::default();
    let writer = lines.clone();
    // The default level, with the access log turned on as an operator would; global, since the
    // nodes' tasks run on every worker thread (this binary holds this one test).
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,ftz_node::access=debug"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .expect("the only subscriber of this test binary");
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    let cert = certification(&c, "SH-LOG-1", "AEO_ADVANCED");
    c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.unwrap();
    let before = lines.text().lines().count();

    let mut verify = VerifyClient::new(c.local.user_channel("hainan", ftz_core::Role::Enterprise).unwrap());
    const N: usize = 40;
    for _ in 0..N {
        let req = VerifyRecordRequest {
            subject: Some(verify_record_request::Subject::Ref(RecordRef {
                issuing_zone: "shanghai".into(),
                record_id: "SH-LOG-1".into(),
            })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        };
        assert!(verify.verify_record(req).await.unwrap().into_inner().valid);
    }
    let text = lines.text();
    let after: Vec<&str> = text.lines().skip(before).collect();
    let access: Vec<&&str> = after.iter().filter(|l| l.contains("ftz_node::access")).collect();
    let other: Vec<&&str> = after.iter().filter(|l| !l.contains("ftz_node::access")).collect();
    // One access line per verification on hainan (at least: hainan also calls shanghai once,
    // then serves from its cache), with the method and the caller.
    assert!(access.len() >= N, "{} access lines for {N} calls:\n{}", access.len(), after.join("\n"));
    let verified = access
        .iter()
        .filter(|l| l.contains("method=/ftz.v1.Verify/VerifyRecord") && l.contains("grpc_status=\"0\""))
        .count();
    assert!(verified >= N, "{verified} successful verifications in the access log:\n{}", after.join("\n"));
    // Nothing else per call: a few lines at most (a checkpoint, a cosignature), not N.
    assert!(
        other.len() < N / 4,
        "{} other lines for {N} calls:\n{}",
        other.len(),
        other.iter().map(|l| **l).collect::<Vec<_>>().join("\n")
    );
    c.shutdown().await;
}
