//! Demo step 8: a zone goes offline. Guangdong pushes a result to shanghai while shanghai's
//! node is down: the delivery waits in guangdong's outbox (on disk), and arrives, once, when
//! shanghai is back.

use std::time::Duration;

use anyhow::Result;
use ftz_core::Role;
use ftz_devkit::{LocalFederation, dev};
use ftz_proto::{
    FindInspectionsRequest, ListOutboxRequest, PushInspectionRequest, RecordInspectionRequest,
    admin_client::AdminClient, issuer_client::IssuerClient, verify_client::VerifyClient,
};

use super::{DemoReport, now};

pub(super) async fn step(fed: &mut LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 8. A zone goes offline: what must reach it waits in the outbox and arrives once it is back ==");
    let mut issuer = IssuerClient::new(fed.user_channel("guangdong", Role::Issuer)?);
    let result = dev::sample_inspection("GD-RPT-2026-0916", "LOT-850760-0043", now());
    issuer.record_inspection(RecordInspectionRequest { result: Some(result) }).await?;
    fed.stop("shanghai").await?;
    r.say("  shanghai's node is stopped");
    let push = PushInspectionRequest {
        record_id: "GD-RPT-2026-0916".into(),
        to_zone: "shanghai".into(),
        purpose: "import-clearance".into(),
    };
    let sent = issuer.push_inspection(push).await?.into_inner();
    let mut admin = AdminClient::new(fed.user_channel("guangdong", Role::Admin)?);
    let waiting = admin.list_outbox(ListOutboxRequest { limit: 0 }).await?.into_inner();
    r.check(
        "outbox",
        "guangdong pushes report GD-RPT-2026-0916 to shanghai: queued, kept on disk",
        sent.queued && waiting.total == 1,
        waiting
            .entries
            .first()
            .map(|e| format!("{} to {}, {} attempt(s): {}", e.kind, e.to_zone, e.attempts, e.last_error))
            .unwrap_or_else(|| "the outbox is empty".into()),
    );

    fed.restart("shanghai").await?;
    let drained = crate::outbox::drained(&mut admin, Duration::from_secs(30)).await;
    let found = VerifyClient::new(fed.user_channel("shanghai", Role::Enterprise)?)
        .find_inspections(FindInspectionsRequest {
            lot_id: "LOT-850760-0043".into(),
            recognising_zone: String::new(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner()
        .results;
    r.check(
        "outbox",
        "shanghai is back: the retry delivers it, and shanghai's enterprise finds the lot",
        drained.is_ok() && found.len() == 1 && found[0].valid,
        match &drained {
            Ok(()) => format!("outbox empty; {} result(s) for the lot", found.len()),
            Err(e) => format!("outbox: {e}; {} result(s) for the lot", found.len()),
        },
    );
    Ok(())
}
