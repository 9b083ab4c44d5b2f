//! Demo step 8: the auditors' view. Every node's log is exported and checked offline; every
//! transfer between two zones must be the same leaf in both logs and every refusal logged by
//! both sides; one transfer's proof is checked with nothing but keys, with a quorum of
//! witnesses, and a changed byte is caught.

use std::{path::Path, time::Duration};

use anyhow::Result;
use ftz_audit::offline::{CrossReport, verify_proof};
use ftz_core::Role;
use ftz_devkit::LocalFederation;
use ftz_proto::audit_client::AuditClient;

use super::{DemoReport, ZONES};
use crate::audit_dir::{self, ExportDir, settled_checkpoint};

const SETTLE: Duration = Duration::from_secs(20);
/// Attempts at a consistent set of exports: a receipt still on its way back to a provider
/// makes a transfer one-sided for a moment.
const ATTEMPTS: usize = 20;

struct Exported {
    dirs: Vec<ExportDir>,
    pairs: Vec<(usize, usize, CrossReport)>,
}

impl Exported {
    fn complete(&self) -> bool {
        self.pairs
            .iter()
            .all(|(_, _, c)| !c.one_sided() && c.refusals_only_a.is_empty() && c.refusals_only_b.is_empty())
    }
}

async fn export_all(fed: &LocalFederation, root: &Path) -> Result<Exported> {
    let mut dirs = Vec::new();
    for zone in ZONES {
        let mut client = AuditClient::new(fed.user_channel(zone, Role::Auditor)?);
        settled_checkpoint(&mut client, ZONES.len() - 1, SETTLE).await?;
        let out = root.join(zone);
        audit_dir::export(&mut client, &out, |_, _| {}).await?;
        dirs.push(ExportDir::open(&out)?);
    }
    let mut pairs = Vec::new();
    for a in 0..dirs.len() {
        for b in a + 1..dirs.len() {
            let (_, _, c) = audit_dir::cross_check(&dirs[a], &dirs[b], |_| {})?;
            pairs.push((a, b, c));
        }
    }
    Ok(Exported { dirs, pairs })
}

pub(super) async fn step(fed: &LocalFederation, r: &mut DemoReport, root: &Path) -> Result<()> {
    r.say("\n== 9. Auditors: both zones log every transfer and refusal; proofs check offline with a quorum of witnesses ==");
    let mut attempt = 0;
    let ex = loop {
        attempt += 1;
        let dir = root.join(format!("audit-{attempt}"));
        let ex = export_all(fed, &dir).await?;
        if ex.complete() || attempt == ATTEMPTS {
            break ex;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for e in &ex.dirs {
        let v = e.verify(None, ZONES.len() - 1, |_| {})?;
        let kinds = v.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
        r.check(
            "audit",
            format!("{}'s log rebuilds to its checkpoint, cosigned by both other zones", e.zone),
            v.problem_count == 0 && v.cosigners == (ZONES.len() - 1) as u64,
            if v.problem_count == 0 {
                format!("{} entries ({kinds}), {} cosignatures", v.entries, v.cosigners)
            } else {
                v.problems.join("; ")
            },
        );
    }
    for (a, b, c) in &ex.pairs {
        let (za, zb) = (&ex.dirs[*a].zone, &ex.dirs[*b].zone);
        let one_sided: Vec<String> = c
            .only_a
            .iter()
            .chain(&c.refusals_only_a)
            .map(|(i, s)| format!("only in {za}'s log, entry {i}: {s}"))
            .chain(
                c.only_b.iter().chain(&c.refusals_only_b).map(|(i, s)| format!("only in {zb}'s log, entry {i}: {s}")),
            )
            .collect();
        r.check(
            "audit",
            format!("{za} and {zb} log the same transfers and refusals"),
            one_sided.is_empty(),
            if one_sided.is_empty() {
                format!(
                    "{} transfer(s), byte-identical leaves; {} refusal(s) on both sides",
                    c.in_both, c.refusals_in_both
                )
            } else {
                one_sided.join("; ")
            },
        );
    }

    // One transfer of shanghai's, checked as an outside auditor would: files and keys only.
    let sh = &ex.dirs[0];
    let mut found = None;
    for &i in &sh.indices {
        let leaf = sh.read_entry(i)?;
        if let Ok((ftz_audit::leaf::Leaf::Transfer { .. }, _)) = ftz_audit::entry::describe(&leaf) {
            found = Some((i, leaf));
            break;
        }
    }
    let Some((index, leaf)) = found else {
        r.check("audit", "shanghai's log holds a transfer", false, "none found");
        return Ok(());
    };
    let proof_path = audit_dir::proof_path(&sh.dir, index);
    let proof = std::fs::read_to_string(&proof_path)?;
    let log = sh.log_key(None)?;
    let witnesses = sh.keys.witnesses();
    let quorum = witnesses.len();
    r.say(format!(
        "  an auditor checks entry {index} of shanghai's log offline, as with\n    ftzctl audit verify-proof --entry {} --proof {} \\\n      --log-key {} \\\n{}      --quorum {quorum}",
        audit_dir::entry_path(&sh.dir, index).display(),
        proof_path.display(),
        log.to_vkey(),
        witnesses.iter().map(|w| format!("      --witness-key {} \\\n", w.to_vkey())).collect::<String>(),
    ));
    match verify_proof(&leaf, &proof, &log, &witnesses, quorum) {
        Ok((cp, i, n)) => r.check(
            "audit",
            format!("entry {i} is included under shanghai's checkpoint, cosigned by {n} of {quorum} witnesses"),
            n == quorum,
            format!(
                "checkpoint size {}, {} proof hashes",
                cp.size,
                ftz_audit::checkpoint::TlogProof::parse(&proof).map(|p| p.hashes.len()).unwrap_or(0)
            ),
        ),
        Err(e) => r.check("audit", "the transfer's proof verifies offline", false, e.to_string()),
    }
    let mut tampered = leaf.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let res = verify_proof(&tampered, &proof, &log, &witnesses, quorum);
    r.check(
        "audit",
        "the same entry with one byte changed is rejected",
        res.is_err(),
        res.err().map(|e| e.to_string()).unwrap_or_else(|| "accepted".into()),
    );
    Ok(())
}
