//! `ftzctl demo`: the whole system on 127.0.0.1 in one command. Three zones, real nodes, real
//! mutual TLS, real stores in a temporary directory; every flow that exists is shown, and every
//! expectation is checked: the demo exits non-zero if any of them does not hold.

use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use ftz_client::ExpectedServer;
use ftz_core::{Clock, Identity, Reason, Role, SystemClock, ZoneId};
use ftz_devkit::{LocalFederation, dev};
use ftz_pki::issue::{Issued, ZoneCa};
use ftz_policy::bundle::{OfflineInputs, verify_bundle};
use ftz_proto::{
    AggregateFunction, AggregateQuery, AggregationRules, DataClass, ExportBundleRequest, FetchIndustryRowsRequest,
    FieldAction, FieldRule, FindInspectionsRequest, GetNodeStatusRequest, ImportRowsRequest, IndustryRow,
    IssueCertificationRequest, ListZonesRequest, MetricBound, PingPeerRequest, PingRequest, PushInspectionRequest,
    QueryIndustryDataRequest, RecognitionAgreement, RecordInspectionRequest, RecordRef, RecordStatus, RevokeRequest,
    RowFilter, VerificationResult, VerifyRecordRequest, admin_client::AdminClient, issuer_client::IssuerClient,
    peer_client::PeerClient, verify_client::VerifyClient, verify_record_request,
};
use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};

mod audit;
mod ops;
mod outbox;
mod serve;
mod web;

pub const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];

#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Keep the federation's files here instead of a temporary directory.
    pub keep: Option<PathBuf>,
    /// After the demo, keep the federation up (until Ctrl-C or SIGTERM) and say where its
    /// consoles and users' certificates are.
    pub serve: Option<ServeOutput>,
}

pub use serve::ServeOutput;

/// One expectation of the demo and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    pub step: &'static str,
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct DemoReport {
    pub checks: Vec<Check>,
    pub transcript: String,
}

impl DemoReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "passed": self.passed(),
            "checks": self.checks.iter().map(|c| json!({"step": c.step, "what": c.what, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        })
    }

    fn check(&mut self, step: &'static str, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        let (what, detail) = (what.into(), detail.into());
        let _ = writeln!(self.transcript, "  [{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        self.checks.push(Check { step, what, ok, detail });
    }

    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.transcript, "{}", line.as_ref());
    }
}

/// Runs the demo; `progress` receives the transcript as it grows (one call per step).
pub async fn run(opts: &DemoOptions, mut progress: impl FnMut(&str)) -> Result<DemoReport> {
    let tmp;
    let root: PathBuf = match &opts.keep {
        Some(p) => p.clone(),
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().join("federation")
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut r = DemoReport::default();
    let mut shown = 0;
    let mut flush = |r: &DemoReport| {
        progress(&r.transcript[shown..]);
        shown = r.transcript.len();
    };

    r.say("== 1. A federation of three free trade zones on 127.0.0.1 ==");
    let mut fed = LocalFederation::start(&ZONES, &root, clock.clone()).await.context("starting the federation")?;
    for z in &fed.fed.zones {
        r.say(format!("  {:<10} {}  node key {}", z.id, z.endpoint, z.node_key_id));
    }
    r.say(format!(
        "  registry v1 signed by the {} zone authorities (quorum {}); keys, certificates and stores in {}{}",
        ZONES.len(),
        ZONES.len() / 2 + 1,
        root.display(),
        if opts.keep.is_some() { "" } else { " (removed at the end)" }
    ));
    let outcome = steps(&mut fed, &mut r, &mut flush, &root.join("exports")).await;
    if let Err(e) = outcome {
        fed.shutdown().await;
        return Err(e);
    }

    let passed = r.checks.iter().filter(|c| c.ok).count();
    r.say(format!("\n== Summary: {passed} of {} checks passed ==", r.checks.len()));
    let failed: Vec<String> =
        r.checks.iter().filter(|c| !c.ok).map(|c| format!("  FAILED: {} / {}: {}", c.step, c.what, c.detail)).collect();
    for line in failed {
        r.say(line);
    }
    if opts.keep.is_some() {
        r.say(format!("  the federation's files are kept in {}", root.display()));
    }
    flush(&r);
    let served = match opts.serve {
        Some(out) => serve::serve(&fed, &root, &r, out).await,
        None => Ok(()),
    };
    fed.shutdown().await;
    served?;
    Ok(r)
}

async fn steps(
    fed: &mut LocalFederation,
    r: &mut DemoReport,
    flush: &mut impl FnMut(&DemoReport),
    exports: &std::path::Path,
) -> Result<()> {
    // Every node answers its admin with its status.
    for z in ZONES {
        let s = AdminClient::new(fed.user_channel(z, Role::Admin)?).get_node_status(GetNodeStatusRequest {}).await;
        match s {
            Ok(s) => {
                let s = s.into_inner();
                r.check(
                    "federation",
                    format!("{z} node is up"),
                    s.registry_version == 1,
                    format!("registry v{}, peers {}", s.registry_version, s.peer_zones.join(", ")),
                );
            }
            Err(e) => r.check("federation", format!("{z} node is up"), false, crate::output::status_line(&e)),
        }
    }
    let zones = VerifyClient::new(fed.user_channel("hainan", Role::Enterprise)?).list_zones(ListZonesRequest {}).await;
    let n = zones.as_ref().map(|z| z.get_ref().zones.len()).unwrap_or(0);
    r.check(
        "federation",
        "an enterprise in hainan sees the federation's zones",
        n == ZONES.len(),
        format!("{n} zones listed"),
    );
    flush(r);

    r.say("\n== 2. Every node pings every other node: signed challenge and answer over mutual TLS ==");
    for from in ZONES {
        let mut admin = AdminClient::new(fed.user_channel(from, Role::Admin)?);
        for to in ZONES.iter().filter(|t| **t != from) {
            match admin.ping_peer(PingPeerRequest { zone_id: to.to_string() }).await {
                Ok(p) => {
                    let p = p.into_inner();
                    let expected = fed.fed.zone(to).map(|z| z.node_key_id.to_string()).unwrap_or_default();
                    r.check(
                        "ping",
                        format!("{from} -> {to}"),
                        p.peer_node_key_id == expected && p.peer_registry_version == 1,
                        format!(
                            "answer signed by {to}'s node key {}, registry v{}, {:.1} ms",
                            short(&p.peer_node_key_id),
                            p.peer_registry_version,
                            p.round_trip_us as f64 / 1000.0
                        ),
                    );
                }
                Err(e) => r.check("ping", format!("{from} -> {to}"), false, crate::output::status_line(&e)),
            }
        }
    }
    flush(r);

    r.say("\n== 3. Strangers and wrong roles are refused, with a reason ==");
    let shanghai = fed.fed.zone("shanghai").context("shanghai")?;
    let validity = shanghai.validity;
    let rogue = ZoneCa::generate_named("rogue CA (not in any registry)", validity)?;
    let impostor = rogue.issue_node(&ZoneId::new("hainan")?, &[], validity)?;
    let expect = ExpectedServer {
        zone: shanghai.id.clone(),
        ca_der: shanghai.ca.issued.cert_der.clone(),
        clock: Arc::new(SystemClock),
    };
    let ch =
        ftz_client::channel(&shanghai.endpoint, expect.clone(), Some(identity(&impostor)?), Duration::from_secs(5))?;
    let res = PeerClient::new(ch).ping(PingRequest { challenge: None }).await;
    refused(
        r,
        "a node presenting a certificate from an unknown CA (claims to be hainan) calls shanghai",
        res,
        Reason::UntrustedCertificate,
    );

    let ch = ftz_client::channel(&shanghai.endpoint, expect, None, Duration::from_secs(5))?;
    let res = AdminClient::new(ch).get_node_status(GetNodeStatusRequest {}).await;
    refused(r, "a client without a certificate calls shanghai", res, Reason::NoClientCertificate);

    let res = AdminClient::new(fed.user_channel("shanghai", Role::Enterprise)?)
        .get_node_status(GetNodeStatusRequest {})
        .await;
    refused(r, "shanghai's enterprise user calls the Admin service", res, Reason::RoleNotAllowed);

    let user = Identity::user(ZoneId::new("hainan")?, Role::Admin, "dev")?;
    let hainan = fed.fed.zone("hainan").context("hainan")?;
    let hainan_admin = hainan.ca.issue_user(&user, validity)?;
    let expect = ExpectedServer {
        zone: shanghai.id.clone(),
        ca_der: shanghai.ca.issued.cert_der.clone(),
        clock: Arc::new(SystemClock),
    };
    let ch = ftz_client::channel(&shanghai.endpoint, expect, Some(identity(&hainan_admin)?), Duration::from_secs(5))?;
    let res = PeerClient::new(ch).ping(PingRequest { challenge: None }).await;
    refused(r, "a hainan user certificate used as a peer against shanghai", res, Reason::NotAPeer);
    flush(r);

    recognition(fed, r).await?;
    flush(r);
    pushed_inspection(fed, r).await?;
    flush(r);
    offline_bundle(fed, r).await?;
    flush(r);
    industry_data(fed, r).await?;
    flush(r);
    outbox::step(fed, r).await?;
    flush(r);
    audit::step(fed, r, exports).await?;
    flush(r);
    web::step(fed, r).await?;
    flush(r);
    ops::step(fed, r).await?;
    flush(r);
    Ok(())
}

fn now() -> i64 {
    SystemClock.now_ms()
}

fn agreement(id: &str, from: &str, to: &str, rules: Vec<ftz_proto::RecognitionRule>) -> RecognitionAgreement {
    RecognitionAgreement {
        agreement_id: id.into(),
        version: 1,
        from_zone: from.into(),
        to_zone: to.into(),
        rules,
        valid_from_ms: now() - 60_000,
        valid_until_ms: now() + 365 * 86_400_000,
    }
}

async fn verify(fed: &LocalFederation, at: &str, zone: &str, id: &str) -> Result<VerificationResult> {
    let req = VerifyRecordRequest {
        subject: Some(verify_record_request::Subject::Ref(RecordRef {
            issuing_zone: zone.into(),
            record_id: id.into(),
        })),
        recognising_zone: String::new(),
        purpose: "demo".into(),
    };
    Ok(VerifyClient::new(fed.user_channel(at, Role::Enterprise)?).verify_record(req).await?.into_inner())
}

async fn recognition(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 4. Mutual recognition: issued in shanghai, checked and accepted in hainan ==");
    let sh_hn = agreement(
        "sh-hn-2026",
        "shanghai",
        "hainan",
        vec![dev::certification_rule(&["AEO_ADVANCED", "HIGH_TECH_ENTERPRISE"])],
    );
    fed.install_agreement(&sh_hn).await?;
    r.say("  agreement sh-hn-2026, signed by both authorities, installed on both nodes: shanghai's AEO_ADVANCED and HIGH_TECH_ENTERPRISE certifications are recognised in hainan");
    let policy = dev::record_policy(
        "sh-hn-certs",
        "shanghai",
        "hainan",
        DataClass::Certification,
        &["demo", "verification"],
        now(),
    );
    fed.install_policy(&policy).await?;
    r.say("  exchange policy sh-hn-certs, signed by both authorities: shanghai's certifications may go to hainan for verification (30 days retention, no onward transfer)");

    let mut issuer = IssuerClient::new(fed.user_channel("shanghai", Role::Issuer)?);
    let aeo = dev::sample_certification("SH-AEO-2026-0001", "AEO_ADVANCED", now());
    let issued =
        issuer.issue_certification(IssueCertificationRequest { certification: Some(aeo.clone()) }).await?.into_inner();
    r.check(
        "recognition",
        "shanghai issues an AEO advanced certification to Pudong Precision Instruments (91310115MA1H7XQ200)",
        !issued.already_issued,
        format!(
            "signed by shanghai's issuing key {}",
            short(
                &issued
                    .record
                    .as_ref()
                    .and_then(|e| e.signatures.first())
                    .map(|s| hex::encode(&s.key_id))
                    .unwrap_or_default()
            )
        ),
    );
    let again = issuer.issue_certification(IssueCertificationRequest { certification: Some(aeo) }).await?.into_inner();
    r.check(
        "recognition",
        "issuing the same certification again is harmless",
        again.already_issued && again.record == issued.record,
        "already issued, nothing changed",
    );

    let v = verify(fed, "hainan", "shanghai", "SH-AEO-2026-0001").await?;
    r.check(
        "recognition",
        "hainan's enterprise verifies it: hainan's node fetches it from shanghai",
        v.valid && v.source == "fetched" && v.agreement_id == "sh-hn-2026",
        v.explanation.clone(),
    );

    issuer
        .issue_certification(IssueCertificationRequest {
            certification: Some(dev::sample_certification("SH-TITLE-0042", "PROFESSIONAL_TITLE", now())),
        })
        .await?;
    let v = verify(fed, "hainan", "shanghai", "SH-TITLE-0042").await?;
    r.check(
        "recognition",
        "a professional title (a type no agreement covers) is authentic but not recognised",
        v.authentic && !v.recognised && v.recognition_reason == "NOT_COVERED",
        v.explanation.clone(),
    );

    let rev = issuer
        .revoke(RevokeRequest {
            record_id: "SH-AEO-2026-0001".into(),
            reason: "holder failed the follow-up audit".into(),
        })
        .await?
        .into_inner();
    r.check(
        "recognition",
        "shanghai revokes the AEO certification and tells the zones holding it",
        rev.notified_zones == vec!["hainan".to_string()],
        format!("notified: {}", rev.notified_zones.join(", ")),
    );
    let v = verify(fed, "hainan", "shanghai", "SH-AEO-2026-0001").await?;
    r.check(
        "recognition",
        "hainan now reports it revoked",
        !v.valid && v.status == RecordStatus::Revoked as i32,
        v.explanation.clone(),
    );
    Ok(())
}

async fn pushed_inspection(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 5. An inspection result travels with its lot: guangdong pushes it to shanghai ==");
    fed.install_agreement(&agreement("gd-sh-cnas", "guangdong", "shanghai", vec![dev::inspection_rule("CNAS")]))
        .await?;
    let purposes = ["import-clearance", "demo"];
    let policy =
        dev::record_policy("gd-sh-inspections", "guangdong", "shanghai", DataClass::InspectionResult, &purposes, now());
    fed.install_policy(&policy).await?;
    r.say("  agreement gd-sh-cnas and exchange policy gd-sh-inspections installed: guangdong's CNAS-accredited inspection results are recognised in shanghai and may be sent there for import clearance");
    let mut issuer = IssuerClient::new(fed.user_channel("guangdong", Role::Issuer)?);
    let result = dev::sample_inspection("GD-RPT-2026-0815", "LOT-850760-0042", now());
    issuer.record_inspection(RecordInspectionRequest { result: Some(result) }).await?;
    let push = PushInspectionRequest {
        record_id: "GD-RPT-2026-0815".into(),
        to_zone: "shanghai".into(),
        purpose: "import-clearance".into(),
    };
    let first = issuer.push_inspection(push.clone()).await?.into_inner();
    let retry = issuer.push_inspection(push).await?.into_inner();
    r.check(
        "push",
        "guangdong records report GD-RPT-2026-0815 for lot LOT-850760-0042 and pushes it to shanghai, twice",
        !first.already_delivered && retry.already_delivered,
        "delivered once; the retry was recognised as already delivered",
    );
    let found = VerifyClient::new(fed.user_channel("shanghai", Role::Enterprise)?)
        .find_inspections(FindInspectionsRequest {
            lot_id: "LOT-850760-0042".into(),
            recognising_zone: String::new(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner()
        .results;
    let ok = found.len() == 1 && found[0].valid && found[0].source == "delivered";
    let detail = found.first().map(|v| v.explanation.clone()).unwrap_or_else(|| "nothing found".into());
    r.check(
        "push",
        "shanghai's enterprise finds the lot's result at its own node, without a call to guangdong",
        ok,
        detail,
    );
    Ok(())
}

async fn offline_bundle(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 6. Offline: one file with everything needed, checked with no network ==");
    let mut issuer = IssuerClient::new(fed.user_channel("shanghai", Role::Issuer)?);
    issuer
        .issue_certification(IssueCertificationRequest {
            certification: Some(dev::sample_certification("SH-HTE-0007", "HIGH_TECH_ENTERPRISE", now())),
        })
        .await?;
    let bundle = VerifyClient::new(fed.user_channel("hainan", Role::Enterprise)?)
        .export_bundle(ExportBundleRequest {
            r#ref: Some(RecordRef { issuing_zone: "shanghai".into(), record_id: "SH-HTE-0007".into() }),
            recognising_zone: String::new(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner()
        .bundle
        .context("no bundle")?;
    let bytes = bundle.encode_to_vec();
    let hainan = fed.fed.zone("hainan").context("hainan")?;
    let zone = hainan.id.clone();
    let inputs = OfflineInputs {
        anchor: &hainan.authority_key_id,
        recognising_zone: &zone,
        at: now(),
        max_status_age_ms: None,
        min_registry_version: None,
    };
    match verify_bundle(&bytes, inputs) {
        Ok(c) => r.check(
            "offline",
            format!(
                "hainan exports SH-HTE-0007 ({} bytes) and checks it offline, anchored on hainan's authority key",
                bytes.len()
            ),
            c.verdict.valid(),
            c.verdict.explanation(),
        ),
        Err(e) => r.check("offline", "hainan checks the exported file offline", false, e.to_string()),
    }
    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    match verify_bundle(&tampered, inputs) {
        Ok(c) => {
            r.check("offline", "one changed byte is detected", false, format!("accepted: {}", c.verdict.explanation()))
        }
        Err(e) => r.check(
            "offline",
            "one changed byte is detected",
            e.reason() == Reason::BundleInvalid,
            format!("{}: {e}", e.reason()),
        ),
    }

    // An attack: hainan's node re-signs the bundle saying its status may be a century old, and
    // the file is shown six months later. The verifier decides how old a status may be.
    let mut doc: ftz_proto::VerificationBundle =
        ftz_core::envelope::decode_payload(&bundle, ftz_core::envelope::PayloadType::VERIFICATION_BUNDLE)?;
    doc.max_status_age_ms = 100 * 365 * 86_400_000;
    let node_key = ftz_pki::files::read_signing_key(&hainan.node_key_path())?;
    let forged = ftz_core::envelope::seal(ftz_core::envelope::PayloadType::VERIFICATION_BUNDLE, &doc, &[&node_key]);
    let later = OfflineInputs { at: now() + 182 * 86_400_000, ..inputs };
    match verify_bundle(&forged.encode_to_vec(), later) {
        Ok(c) => r.check(
            "offline",
            "hainan's node re-signs the file claiming its status never ages; shown six months on, it is stale",
            !c.verdict.valid() && c.verdict.status_reason == Some(Reason::StatusStale),
            c.verdict.explanation(),
        ),
        Err(e) => r.check("offline", "a re-signed bundle is judged", false, e.to_string()),
    }
    Ok(())
}

fn refused<T>(r: &mut DemoReport, what: &str, res: Result<T, tonic::Status>, want: Reason) {
    match res {
        Ok(_) => r.check("refusal", what, false, format!("was let in; expected {want}")),
        Err(s) => {
            let got = ftz_client::reason_of(&s);
            r.check("refusal", what, got == Some(want), crate::output::status_line(&s));
        }
    }
}

fn identity(i: &Issued) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let key = PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).context("generated key")?;
    Ok((vec![CertificateDer::from(i.cert_der.clone())], key))
}

fn short(key_id: &str) -> &str {
    key_id.get(..12).unwrap_or(key_id)
}

/// Enterprises in C3841 in the demo's dataset: enough for the group to pass the noisy threshold
/// of partition selection (about 54 above the minimum at epsilon 0.25 and delta 1e-6) whatever
/// the noise.
const DEMO_C3841: usize = 150;

/// Shanghai's industry dataset for the demo: 150 enterprises in C3841 (batteries) and 3 in
/// C3842, two quarters each.
fn demo_rows() -> Vec<IndustryRow> {
    let mut rows = Vec::new();
    for i in 0..DEMO_C3841 + 3 {
        let first17 = format!("91310115MA1D{i:05}");
        let uscc = format!("{first17}{}", ftz_core::records::uscc_check_char(&first17).unwrap_or('0'));
        for (q, period) in ["2026-Q2", "2026-Q3"].into_iter().enumerate() {
            rows.push(IndustryRow {
                line: (i * 2 + q + 2) as u64,
                enterprise_uscc: uscc.clone(),
                enterprise_name: format!("Lingang Battery Works {i}"),
                industry_code: if i < DEMO_C3841 { "C3841".into() } else { "C3842".into() },
                region: "310115".into(),
                period: period.into(),
                output_value: 5_000_000 + 750_000 * i as i64,
                employment: 40 + 7 * i as i64,
                capacity: 10_000,
            });
        }
    }
    rows
}

async fn industry_data(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 7. Industry data leaves only as the signed policy allows, minimised at the source ==");
    let rows = demo_rows();
    let imported = IssuerClient::new(fed.user_channel("shanghai", Role::Issuer)?)
        .import_rows(ImportRowsRequest { rows: rows.clone() })
        .await?
        .into_inner();
    r.say(format!(
        "  shanghai loads its industry dataset: {} rows of {} enterprises ({DEMO_C3841} in C3841, 3 in C3842)",
        imported.total_rows,
        DEMO_C3841 + 3
    ));
    let rule = |f: &str, a: FieldAction, p: &str| FieldRule { field: f.into(), action: a as i32, parameter: p.into() };
    let mut policy = dev::record_policy(
        "sh-hn-industry",
        "shanghai",
        "hainan",
        DataClass::IndustryData,
        &["industrial-planning"],
        now(),
    );
    policy.field_rules = vec![
        rule("enterprise_uscc", FieldAction::Pseudonymise, ""),
        rule("industry_code", FieldAction::Keep, ""),
        rule("region", FieldAction::Generalise, "prefix:4"),
        rule("period", FieldAction::Generalise, "year"),
        rule("output_value", FieldAction::Generalise, "range:5000000"),
    ];
    policy.aggregation = Some(AggregationRules {
        group_by: vec!["industry_code".into(), "period".into()],
        min_group_size: 5,
        differential_privacy: true,
        epsilon_per_query: 0.5,
        epsilon_budget: 1.0,
        budget_period_ms: 30 * 86_400_000,
        sum_bounds: vec![MetricBound { metric: "output_value".into(), bound: 50_000_000 }],
        row_level: true,
        max_groups_per_enterprise: 1,
        delta_per_query: 1e-6,
    });
    fed.install_policy(&policy).await?;
    r.say("  policy sh-hn-industry: hainan may ask for industrial planning; groups under 5 enterprises never released, larger ones by a noisy threshold (delta 1e-6); discrete Laplace noise, epsilon 0.5 a query, 1.0 a month; rows with pseudonymised codes, names dropped, periods to years");

    let mut verify = VerifyClient::new(fed.user_channel("hainan", Role::Enterprise)?);
    let query = |purpose: &str| QueryIndustryDataRequest {
        provider_zone: "shanghai".into(),
        query: Some(AggregateQuery {
            function: AggregateFunction::Count as i32,
            metric: String::new(),
            group_by: vec!["industry_code".into()],
            filters: vec![],
            purpose: purpose.into(),
        }),
    };
    let a = verify.query_industry_data(query("industrial-planning")).await?.into_inner();
    let shown: Vec<String> = a.groups.iter().map(|g| format!("{} ≈ {:.0}", g.key.join("/"), g.value)).collect();
    r.check(
        "privacy",
        "hainan counts shanghai's enterprises by industry",
        a.groups.len() == 1 && a.groups[0].key == ["C3841"] && a.suppressed_groups == 0 && a.noised,
        format!(
            "{}; C3842 (3 enterprises) not released, and how many groups were held back is not told; epsilon {} charged, {} left",
            shown.join(", "),
            a.epsilon_charged,
            a.epsilon_remaining
        ),
    );
    let res = verify.query_industry_data(query("marketing")).await;
    refused_relayed(
        r,
        "the same question for marketing (a purpose the policy does not name)",
        res,
        "PURPOSE_NOT_ALLOWED",
    );
    verify.query_industry_data(query("industrial-planning")).await?;
    let res = verify.query_industry_data(query("industrial-planning")).await;
    refused_relayed(r, "a third question this month, past the privacy budget", res, "BUDGET_EXHAUSTED");

    let got = verify
        .fetch_industry_rows(FetchIndustryRowsRequest {
            provider_zone: "shanghai".into(),
            filters: vec![RowFilter { field: "industry_code".into(), prefix: "C3841".into() }],
            purpose: "industrial-planning".into(),
            limit: 3,
        })
        .await?
        .into_inner();
    let first = got.rows.first().map(|row| {
        let mut f: Vec<_> = row.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.sort();
        f.join(" ")
    });
    let minimised = got.rows.iter().all(|row| {
        row.fields.get("enterprise_uscc").is_some_and(|v| v.starts_with("p:"))
            && !row.fields.contains_key("enterprise_name")
    });
    r.check(
        "privacy",
        "hainan fetches rows: minimised by shanghai before they leave",
        minimised && !got.rows.is_empty(),
        first.unwrap_or_default(),
    );

    // Deny by default: guangdong holds no policy from shanghai.
    let res = VerifyClient::new(fed.user_channel("guangdong", Role::Enterprise)?)
        .query_industry_data(query("industrial-planning"))
        .await;
    refused_relayed(r, "guangdong asks for the same counts: no policy names guangdong", res, "NO_POLICY");

    // Shanghai's authority puts output values on the export negative list: whatever a policy says,
    // they do not leave.
    let list = ftz_proto::ExportNegativeList {
        zone_id: "shanghai".into(),
        version: 1,
        data_classes: vec![],
        fields: vec!["output_value".into()],
        issued_at_ms: now(),
    };
    let authority =
        ftz_pki::files::read_signing_key(&fed.fed.zone("shanghai").context("shanghai")?.authority_key_path())?;
    let env = ftz_core::envelope::seal(ftz_core::envelope::PayloadType::EXPORT_NEGATIVE_LIST, &list, &[&authority]);
    AdminClient::new(fed.user_channel("shanghai", Role::Admin)?)
        .install_negative_list(ftz_proto::InstallNegativeListRequest { negative_list: Some(env) })
        .await?;
    let mut sum = query("industrial-planning");
    if let Some(q) = sum.query.as_mut() {
        q.function = AggregateFunction::Sum as i32;
        q.metric = "output_value".into();
    }
    let res = verify.query_industry_data(sum).await;
    refused_relayed(
        r,
        "hainan asks for the sum of output values, on shanghai's export negative list",
        res,
        "NEGATIVE_LIST",
    );
    Ok(())
}

fn refused_relayed<T>(r: &mut DemoReport, what: &str, res: Result<T, tonic::Status>, want: &str) {
    match res {
        Ok(_) => r.check("privacy", what, false, format!("was answered; expected {want}")),
        Err(s) => {
            let got = ftz_client::status_meta(&s, "peer_reason");
            r.check("privacy", what, got.as_deref() == Some(want), crate::output::status_line(&s));
        }
    }
}
