//! The auditor's charts: transfers and refusals over time, per zone pair and per reason, drawn
//! as SVG on the server (no script, no chart library) from the latest entries of the log.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_audit::leaf::{Leaf, Refusing};
use maud::{Markup, html};
use serde_json::json;

use super::{
    Api, Ctx, Page,
    audit::audit_nav,
    fmt::{list, n, s, time},
    i18n::T,
};
use crate::gateway::problem::Problem;

/// The charts count at most this many of the latest entries (ten calls of a thousand), so the
/// page costs the same on a log of any size.
const SCAN: u64 = 10_000;
const BUCKETS: usize = 24;

#[derive(Default)]
struct Tally {
    /// Per time bucket: transfers, refusals, unacknowledged.
    buckets: Vec<[u64; 3]>,
    pairs: BTreeMap<(String, String), u64>,
    reasons: BTreeMap<(String, String, String), u64>,
    counted: u64,
    first_ms: i64,
    last_ms: i64,
}

pub(crate) async fn page(ctx: &Ctx, api: &Api) -> Result<Page, Problem> {
    let probe = api.call("/api/v1/audit/list-entries", json!({"from_index": u64::MAX.to_string(), "limit": 1})).await?;
    let size = n(&probe, "log_size").max(0) as u64;
    let mut from = size.saturating_sub(SCAN);
    let mut entries = Vec::new();
    // Ten calls of a thousand, and never more, whatever the answers hold.
    for _ in 0..SCAN / 1000 {
        if from >= size {
            break;
        }
        let page =
            api.call("/api/v1/audit/list-entries", json!({"from_index": from.to_string(), "limit": 1000})).await?;
        let next = n(&page, "next_index").max(0) as u64;
        for e in list(&page, "entries") {
            entries.push((n(e, "at_ms"), s(e, "kind").to_string(), STANDARD.decode(s(e, "leaf")).unwrap_or_default()));
        }
        if next <= from {
            break;
        }
        from = next;
    }
    let t = tally(&entries);
    Ok(Page::ok(html! {
        h1 { (ctx.t(T::Charts)) }
        (audit_nav(ctx))
        p { (ctx.t(T::ChartsIntro)) " " (ctx.t(T::EntriesScanned)) ": " strong #charts-counted { (t.counted) } " / " (size)
            @if t.counted > 0 { " · " (time(t.first_ms)) " – " (time(t.last_ms)) } }
        (timeline(ctx, &t))
        h2 { (ctx.t(T::Transfers)) " · " (ctx.t(T::ZonePair)) }
        (bars("chart-pairs", t.pairs.iter().map(|((a, b), c)| (format!("{a} → {b}"), *c)).collect(), "allowed"))
        h2 { (ctx.t(T::Refusals)) " · " (ctx.t(T::RefusalPair)) }
        (bars("chart-reasons", t.reasons.iter().map(|((a, b, r), c)| (format!("{a} → {b} · {r}"), *c)).collect(), "refused"))
    }))
}

fn tally(entries: &[(i64, String, Vec<u8>)]) -> Tally {
    let dated: Vec<&(i64, String, Vec<u8>)> = entries.iter().filter(|e| e.0 > 0).collect();
    let first = dated.iter().map(|e| e.0).min().unwrap_or(0);
    let last = dated.iter().map(|e| e.0).max().unwrap_or(0);
    let span = (last - first).max(1);
    let mut t = Tally { buckets: vec![[0; 3]; BUCKETS], first_ms: first, last_ms: last, ..Default::default() };
    for (at, kind, leaf) in dated {
        let slot = (((at - first) as i128 * BUCKETS as i128 / (span as i128 + 1)) as usize).min(BUCKETS - 1);
        let col = match kind.as_str() {
            "transfer" => 0,
            "refusal" => 1,
            "unacknowledged" => 2,
            _ => continue,
        };
        t.counted += 1;
        t.buckets[slot][col] += 1;
        match ftz_audit::entry::describe(leaf).map(|(l, e)| (l, e.zones)) {
            Ok((Leaf::Refusal { zone, other_zone, refusing, reason, .. }, _)) => {
                let (by, of) =
                    if refusing == Refusing::RefusedByPeer { (other_zone, zone) } else { (zone, other_zone) };
                *t.reasons.entry((by, of, reason)).or_default() += 1;
            }
            Ok((Leaf::Transfer { .. }, zones)) if zones.len() == 2 => {
                *t.pairs.entry((zones[0].clone(), zones[1].clone())).or_default() += 1;
            }
            _ => {}
        }
    }
    t
}

/// Stacked bars per time bucket: transfers, refusals, unacknowledged.
fn timeline(ctx: &Ctx, t: &Tally) -> Markup {
    let (w, h, pad) = (720.0_f64, 200.0_f64, 24.0_f64);
    let max = t.buckets.iter().map(|b| b.iter().sum::<u64>()).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / BUCKETS as f64;
    let classes = ["allowed", "refused", "unacknowledged"];
    html! {
        figure {
            svg #chart-transfers viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(ctx.t(T::Charts)) {
                line.axis x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) {}
                @for (i, b) in t.buckets.iter().enumerate() {
                    @let x = pad + i as f64 * bw;
                    @let mut y = h - pad;
                    @for (c, count) in b.iter().enumerate() {
                        @if *count > 0 {
                            @let bar = (h - 2.0 * pad) * *count as f64 / max;
                            @let top = { y -= bar; y };
                            rect class=(classes[c]) x=(format!("{:.1}", x + 1.0)) y=(format!("{top:.1}")) width=(format!("{:.1}", bw - 2.0)) height=(format!("{bar:.1}")) {
                                title { (classes[c]) ": " (count) }
                            }
                        }
                    }
                }
                text x=(pad) y=(h - 6.0) { (time(t.first_ms)) }
                text x=(w - pad) y=(h - 6.0) text-anchor="end" { (time(t.last_ms)) }
                text x=(pad) y=(14) { (max as u64) }
            }
            figcaption.legend {
                span.key.allowed { (ctx.t(T::Transfers)) } " "
                span.key.refused { (ctx.t(T::Refusals)) } " "
                span.key.unacknowledged { (ctx.t(T::Unacknowledged)) }
            }
        }
    }
}

/// Horizontal bars, one per label.
fn bars(id: &str, rows: Vec<(String, u64)>, class: &str) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let (w, row) = (720.0_f64, 22.0_f64);
    let h = (rows.len().max(1) as f64) * row + 4.0;
    html! {
        svg id=(id) viewBox=(format!("0 0 {w} {h}")) role="img" {
            @for (i, (label, count)) in rows.iter().enumerate() {
                @let y = i as f64 * row + 2.0;
                text x="0" y=(format!("{:.1}", y + 15.0)) { (label) }
                rect class=(class) x="300" y=(format!("{y:.1}")) width=(format!("{:.1}", 360.0 * *count as f64 / max)) height="18" {}
                text x=(format!("{:.1}", 306.0 + 360.0 * *count as f64 / max)) y=(format!("{:.1}", y + 15.0)) { (count) }
            }
        }
    }
}
