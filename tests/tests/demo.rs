//! The README's first command: the demo runs every flow and every one of its checks holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::test]
async fn the_demo_passes_every_check() {
    let mut transcript = String::new();
    let report = ftzctl::demo::run(&ftzctl::demo::DemoOptions::default(), |s| transcript.push_str(s)).await.unwrap();
    assert!(report.passed(), "{transcript}");
    // Every step of the demo contributed checks: a step that silently stopped running would
    // otherwise still "pass".
    for step in ["federation", "ping", "refusal", "recognition", "push", "offline", "privacy"] {
        assert!(report.checks.iter().any(|c| c.step == step), "no checks from step {step}:\n{transcript}");
    }
    assert_eq!(report.checks.iter().filter(|c| c.step == "ping").count(), 6);
}
