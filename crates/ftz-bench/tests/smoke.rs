//! The suite keeps working: every scenario runs (a few operations each, in whatever build the
//! tests use; the figures mean nothing) and the summary has the fields docs/performance.md
//! promises.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn every_scenario_runs_and_the_summary_has_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summary.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_ftz-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "ftz-bench --smoke: {status}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = summary.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    for expected in [
        "crypto_floor_per_transfer",
        "sled_insert_flush",
        "audit_append_durable",
        "proof_make_1k",
        "proof_verify_1k",
        "proof_make_2k",
        "proof_verify_2k",
        "raw_unary_mtls_echo",
        "verify_credential_cached",
        "verify_credential_cached_json",
        "entry_proof_via_node_2k",
        "list_page_grpc_2k",
        "list_page_json_2k",
        "list_refused_grpc_2k",
        "list_refused_json_2k",
        "cross_zone_pull_transfer",
        "push_through_outbox",
        "observed_echo_quiet",
        "observed_echo_metrics",
        "observed_echo_log_info",
        "observed_verify_cached_quiet",
        "observed_verify_cached_metrics",
        "observed_verify_cached_log_info",
        "observed_pull_quiet",
        "observed_pull_metrics",
        "observed_pull_log_info",
    ] {
        assert!(names.contains(&expected), "{expected} is missing from {names:?}");
    }
    for r in rows {
        for field in ["scenario", "ops_per_s", "p50_us", "p99_us", "rss_mb", "baseline", "ratio"] {
            assert!(r.get(field).is_some(), "{field} is missing in {r}");
        }
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["rss_mb"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["p99_us"].as_u64().unwrap() >= r["p50_us"].as_u64().unwrap(), "{r}");
        let baseline = r["baseline"].as_str().unwrap();
        if baseline.is_empty() {
            assert_eq!(r["ratio"].as_f64().unwrap(), 1.0, "{r}");
        } else {
            assert!(names.contains(&baseline), "{r}: its baseline is not in the summary");
        }
    }
}
