//! The auditor's checks, on a small log built here with real signatures: each check passes on
//! the honest log and fails on each kind of tampering.

use ftz_core::{SigningKey, envelope, envelope::PayloadType};
use ftz_proto::{DataClass, Envelope};

use super::*;
use crate::{
    leaf::{LeafSignature, Refusing},
    merkle::inclusion_proof,
    note::{Signer, sign},
};

struct Zone {
    name: &'static str,
    key: SigningKey,
}

fn zone(name: &'static str) -> Zone {
    Zone { name, key: SigningKey::generate().unwrap().0 }
}

fn part(env: &Envelope) -> SignedPart {
    let s = &env.signatures[0];
    SignedPart {
        payload: env.payload.clone(),
        signature: LeafSignature {
            key_id: s.key_id.clone().try_into().unwrap(),
            sig: s.sig.clone().try_into().unwrap(),
        },
    }
}

/// A transfer from `from` to `to`, signed by `intent_key` and `receipt_key`.
fn transfer(id: u8, from: &Zone, to: &Zone, intent_key: &SigningKey, receipt_key: &SigningKey) -> Vec<u8> {
    let intent = TransferIntent {
        transfer_id: vec![id; 16],
        provider_zone: from.name.into(),
        consumer_zone: to.name.into(),
        policy_id: "p".into(),
        policy_version: 1,
        data_class: DataClass::Certification as i32,
        purpose: "audit".into(),
        subject: format!("record {}/R{id}", from.name),
        created_at_ms: 1_000 + i64::from(id),
        ..Default::default()
    };
    let ie = envelope::seal(PayloadType::TRANSFER_INTENT, &intent, &[intent_key]);
    let receipt = TransferReceipt {
        transfer_id: vec![id; 16],
        intent_digest: ftz_core::sha256(&ie.payload).to_vec(),
        consumer_zone: to.name.into(),
        received_at_ms: 2_000,
        accepted: true,
        reason: String::new(),
    };
    let re = envelope::seal(PayloadType::TRANSFER_RECEIPT, &receipt, &[receipt_key]);
    Leaf::Transfer { intent: part(&ie), receipt: part(&re) }.encode()
}

fn refusal(at: i64) -> Vec<u8> {
    Leaf::Refusal {
        at_ms: at,
        zone: "shanghai".into(),
        other_zone: "hainan".into(),
        refusing: Refusing::RefusedPeer,
        reason: "NO_POLICY".into(),
        method: "/ftz.v1.Peer/FetchRecord".into(),
        data_class: "certification".into(),
        policy_id: String::new(),
        subject_digest: [7; 32],
    }
    .encode()
}

struct World {
    sh: Zone,
    hn: Zone,
    gd: Zone,
}

impl World {
    fn new() -> Self {
        Self { sh: zone("shanghai"), hn: zone("hainan"), gd: zone("guangdong") }
    }

    fn log_key(&self) -> Verifier {
        log_verifier("shanghai", self.sh.key.verifying_key()).unwrap()
    }

    fn witnesses(&self) -> Vec<Verifier> {
        [&self.hn, &self.gd].iter().map(|z| witness_verifier(z.name, z.key.verifying_key()).unwrap()).collect()
    }

    fn ring(&self) -> KeyRing {
        let mut keys = vec![self.log_key()];
        keys.extend(self.witnesses());
        KeyRing { keys }
    }

    /// Shanghai's log: two transfers to hainan, one to guangdong, a refusal.
    fn entries(&self) -> Vec<(u64, Vec<u8>)> {
        let (sh, hn, gd) = (&self.sh, &self.hn, &self.gd);
        [
            transfer(1, sh, hn, &sh.key, &hn.key),
            refusal(5),
            transfer(2, sh, gd, &sh.key, &gd.key),
            transfer(3, hn, sh, &hn.key, &sh.key),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, b)| (i as u64, b))
        .collect()
    }

    /// The checkpoint over `entries`, signed by shanghai and cosigned by `cosigners`.
    fn checkpoint(&self, entries: &[(u64, Vec<u8>)], cosigners: &[&Zone]) -> (String, MemoryTree) {
        let mut tree = MemoryTree::new();
        for (_, b) in entries {
            tree.push(b);
        }
        let cp = Checkpoint { origin: crate::checkpoint::origin("shanghai"), size: tree.size(), root: tree.root() };
        let signer = Signer::new(&cp.origin, TYPE_ED25519, &self.sh.key).unwrap();
        let mut note = Note::parse(&sign(&cp.to_text(), &signer).unwrap()).unwrap();
        for z in cosigners {
            let w = Signer::new(&format!("ftz/{}/witness", z.name), TYPE_COSIGNATURE, &z.key).unwrap();
            note.push_signature(w.cosign(1_700_000_000, &note.text));
        }
        (note.to_text(), tree)
    }
}

#[test]
fn an_honest_log_verifies() {
    let w = World::new();
    let entries = w.entries();
    let (cp, _) = w.checkpoint(&entries, &[&w.hn, &w.gd]);
    let mut v = LogVerifier::new(&w.ring());
    for (i, b) in &entries {
        v.push(*i, b);
    }
    let r = v.finish(&cp, &w.log_key(), &w.witnesses(), 2);
    assert_eq!(r.problems, Vec::<String>::new());
    assert_eq!((r.entries, r.transfers, r.refusals, r.checkpoint_size, r.cosigners), (4, 3, 1, 4, 2));
}

#[test]
fn a_flipped_byte_anywhere_is_caught() {
    let w = World::new();
    let entries = w.entries();
    let (cp, _) = w.checkpoint(&entries, &[]);
    for e in 0..entries.len() {
        for pos in [0, 1, entries[e].1.len() / 2, entries[e].1.len() - 1] {
            let mut bad = entries.clone();
            bad[e].1[pos] ^= 1;
            let r = verify_log(&bad, &cp, &w.log_key(), &w.ring());
            assert!(!r.problems.is_empty(), "entry {e} byte {pos}");
        }
    }
}

#[test]
fn a_dropped_entry_is_caught() {
    let w = World::new();
    let entries = w.entries();
    let (cp, _) = w.checkpoint(&entries, &[]);
    let mut bad = entries.clone();
    bad.remove(1);
    let r = verify_log(&bad, &cp, &w.log_key(), &w.ring());
    assert!(r.problems[0].contains("entry 1 is missing"), "{:?}", r.problems);
    // Dropped and renumbered: the root gives it away.
    let renumbered: Vec<_> = bad.into_iter().enumerate().map(|(i, (_, b))| (i as u64, b)).collect();
    let r = verify_log(&renumbered, &cp, &w.log_key(), &w.ring());
    assert!(r.problems.iter().any(|p| p.contains("covers 4 entries, only 3")), "{:?}", r.problems);
}

#[test]
fn history_rewritten_and_resigned_fails_on_signatures_or_duplicates() {
    let w = World::new();
    let (sh, hn) = (&w.sh, &w.hn);
    // Shanghai forges hainan's receipt: signed with shanghai's own key.
    let forged = vec![(0, transfer(1, sh, hn, &sh.key, &sh.key))];
    let (cp, _) = w.checkpoint(&forged, &[]);
    let r = verify_log(&forged, &cp, &w.log_key(), &w.ring());
    assert!(r.problems.iter().any(|p| p.contains("receipt signed by a key of shanghai, not of hainan")), "{r:?}");
    // The same transfer twice.
    let twice = vec![(0, transfer(1, sh, hn, &sh.key, &hn.key)), (1, transfer(1, sh, hn, &sh.key, &hn.key))];
    let (cp, _) = w.checkpoint(&twice, &[]);
    let r = verify_log(&twice, &cp, &w.log_key(), &w.ring());
    assert!(r.problems.iter().any(|p| p.contains("appears twice")), "{r:?}");
    // A receipt for another intent.
    let mut mixed = transfer(1, sh, hn, &sh.key, &hn.key);
    let other = transfer(2, sh, hn, &sh.key, &hn.key);
    let (Leaf::Transfer { intent, .. }, Leaf::Transfer { receipt, .. }) =
        (Leaf::decode(&mixed).unwrap(), Leaf::decode(&other).unwrap())
    else {
        unreachable!()
    };
    mixed = Leaf::Transfer { intent, receipt }.encode();
    let one = vec![(0, mixed)];
    let (cp, _) = w.checkpoint(&one, &[]);
    let r = verify_log(&one, &cp, &w.log_key(), &w.ring());
    assert!(r.problems.iter().any(|p| p.contains("not for this intent")), "{r:?}");
}

#[test]
fn a_checkpoint_by_another_key_or_for_another_root_fails() {
    let w = World::new();
    let entries = w.entries();
    let (cp, _) = w.checkpoint(&entries, &[]);
    let impostor = log_verifier("shanghai", w.hn.key.verifying_key()).unwrap();
    let r = verify_log(&entries, &cp, &impostor, &w.ring());
    assert!(!r.problems.is_empty());
    let (other_cp, _) = w.checkpoint(&entries[..3], &[]);
    let mut more = entries.clone();
    more.truncate(3);
    more.push((3, refusal(6)));
    let r = verify_log(&more, &other_cp, &w.log_key(), &w.ring());
    assert_eq!(r.problems, Vec::<String>::new(), "a checkpoint over a prefix is fine");
    let r = verify_log(&more, &cp, &w.log_key(), &w.ring());
    assert!(r.problems.iter().any(|p| p.contains("do not give the checkpoint's root")), "{r:?}");
}

#[test]
fn proofs_verify_with_a_quorum_of_witnesses_only() {
    let w = World::new();
    let entries = w.entries();
    let (cp, tree) = w.checkpoint(&entries, &[&w.hn]);
    for (i, leaf) in &entries {
        let hashes = inclusion_proof(&tree, *i, tree.size()).unwrap().unwrap();
        let proof = TlogProof { extra: None, index: *i, hashes, checkpoint: cp.clone() }.to_text();
        let (c, index, cosigners) = verify_proof(leaf, &proof, &w.log_key(), &w.witnesses(), 1).unwrap();
        assert_eq!((c.size, index, cosigners), (4, *i, 1));
        let e = verify_proof(leaf, &proof, &w.log_key(), &w.witnesses(), 2).unwrap_err();
        assert!(e.to_string().contains("cosigned by 1 of the given witnesses, 2 required"), "{e}");
        let e = verify_proof(b"another leaf", &proof, &w.log_key(), &w.witnesses(), 1).unwrap_err();
        assert!(e.to_string().contains("is not included"), "{e}");
        let impostor = log_verifier("shanghai", w.gd.key.verifying_key()).unwrap();
        assert!(verify_proof(leaf, &proof, &impostor, &w.witnesses(), 0).is_err());
    }
}

#[test]
fn consistency_between_checkpoints() {
    let w = World::new();
    let entries = w.entries();
    let (old, _) = w.checkpoint(&entries[..2], &[]);
    let (new, tree) = w.checkpoint(&entries, &[]);
    let proof = consistency_text(&crate::merkle::consistency_proof(&tree, 2, 4).unwrap().unwrap());
    assert_eq!(verify_consistency_files(&old, &new, &proof, &w.log_key()), Ok((2, 4)));
    // A rewritten history at size 2, validly signed: not a prefix of the new one.
    let mut rewritten = entries.clone();
    rewritten[1] = (1, refusal(99));
    let (forged_old, _) = w.checkpoint(&rewritten[..2], &[]);
    assert!(verify_consistency_files(&forged_old, &new, &proof, &w.log_key()).is_err());
    assert!(verify_consistency_files(&new, &old, &proof, &w.log_key()).is_err());
    assert!(verify_consistency_files(&old, &new, "not base64\n", &w.log_key()).is_err());
}

#[test]
fn cross_check_lists_one_sided_transfers() {
    let w = World::new();
    let (sh, hn) = (&w.sh, &w.hn);
    let t1 = transfer(1, sh, hn, &sh.key, &hn.key);
    let t2 = transfer(2, sh, hn, &sh.key, &hn.key);
    let t3 = transfer(3, hn, sh, &hn.key, &sh.key);
    let shanghai = vec![(0, t1.clone()), (1, refusal(1)), (2, t2.clone()), (3, t3.clone())];
    let hainan = vec![(0, t3), (1, t1)];
    let r = cross_check("shanghai", &shanghai, "hainan", &hainan);
    assert_eq!(r.in_both, 2);
    assert_eq!(r.only_a.len(), 1);
    assert_eq!(r.only_a[0].0, 2);
    assert!(r.only_b.is_empty());
    assert!(r.one_sided());
    let hainan_complete = vec![(0, transfer(3, hn, sh, &hn.key, &sh.key)), (1, t2)];
    // Re-signed (Ed25519 signatures are deterministic, so the leaf is the same bytes).
    let r = cross_check("shanghai", &shanghai, "hainan", &hainan_complete);
    assert_eq!((r.in_both, r.only_a.len()), (2, 1));
}

#[test]
fn cross_check_pairs_refusals_by_direction_reason_and_subject() {
    let refused = |zone: &str, other: &str, by_us: bool, reason: &str| {
        Leaf::Refusal {
            at_ms: 1,
            zone: zone.into(),
            other_zone: other.into(),
            refusing: if by_us { Refusing::RefusedPeer } else { Refusing::RefusedByPeer },
            reason: reason.into(),
            method: "/ftz.v1.Peer/FetchRecord".into(),
            data_class: String::new(),
            policy_id: String::new(),
            subject_digest: [1; 32],
        }
        .encode()
    };
    // Shanghai refused hainan twice (NO_POLICY) and once (RATE_LIMITED); hainan logged being
    // refused twice for NO_POLICY only, and once something shanghai never logged.
    let sh = vec![
        (0, refused("shanghai", "hainan", true, "NO_POLICY")),
        (1, refused("shanghai", "hainan", true, "NO_POLICY")),
        (2, refused("shanghai", "hainan", true, "RATE_LIMITED")),
        (3, refused("shanghai", "guangdong", true, "NO_POLICY")),
    ];
    let hn = vec![
        (0, refused("hainan", "shanghai", false, "NO_POLICY")),
        (1, refused("hainan", "shanghai", false, "NO_POLICY")),
        (2, refused("hainan", "shanghai", true, "NO_POLICY")),
    ];
    let r = cross_check("shanghai", &sh, "hainan", &hn);
    assert_eq!(r.refusals_in_both, 2);
    assert_eq!(r.refusals_only_a.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
    assert_eq!(r.refusals_only_b.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
    assert!(!r.one_sided(), "one-sided refusals are reported, not failed");
}

#[test]
fn key_rings_parse_and_round_trip() {
    let w = World::new();
    let text = format!("# keys\n\n{}", w.ring().to_text());
    let ring = KeyRing::parse(&text).unwrap();
    assert_eq!(ring.to_text(), w.ring().to_text());
    assert_eq!(ring.witnesses().len(), 2);
    assert!(KeyRing::parse("not a key\n").unwrap_err().to_string().contains("line 1"));
}
