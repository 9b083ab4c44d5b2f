//! The signed ping between nodes: the caller signs a challenge with its node key, the callee
//! answers with a signed statement bound to that challenge. Each side checks the other's
//! signature against the node keys the registry lists, so a ping proves more than TLS did: both
//! nodes hold the run-time keys the authorities registered for them.

use std::time::Instant;

use ftz_core::{
    Reason, Registry, SigningKey, UnixMillis, ZoneId,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_proto::{Envelope, KeyPurpose, PingAnswer, PingChallenge, PingPeerResponse, PingRequest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{
    core::Core,
    error::ApiError,
    peers::{PeerClients, peer_failure},
};

pub(crate) const NONCE_LEN: usize = 32;

fn node_key_lookup<'a>(
    registry: &'a Registry,
    zone: &'a ZoneId,
    now: UnixMillis,
) -> impl Fn(&ftz_core::KeyId) -> Option<ftz_core::VerifyingKey> + 'a {
    move |id| registry.zone(zone).and_then(|z| z.key_valid_at(KeyPurpose::Node, id, now))
}

/// The callee's side: check the caller's challenge and sign an answer.
pub(crate) fn answer(
    challenge: &Envelope,
    caller_zone: &ZoneId,
    own_zone: &ZoneId,
    registry: &Registry,
    key: &SigningKey,
    now: UnixMillis,
    max_skew_ms: i64,
) -> Result<Envelope, ApiError> {
    let (c, _signers): (PingChallenge, _) =
        envelope::open(challenge, PayloadType::PING_CHALLENGE, node_key_lookup(registry, caller_zone, now))?;
    if c.from_zone != caller_zone.as_str() {
        return Err(ApiError::new(
            Reason::ZoneMismatch,
            format!("challenge claims zone {:?}, the caller's certificate names {caller_zone}", c.from_zone),
        ));
    }
    if c.to_zone != own_zone.as_str() {
        return Err(ApiError::new(
            Reason::ZoneMismatch,
            format!("challenge is for zone {:?}, this is {own_zone}", c.to_zone),
        ));
    }
    if c.nonce.len() != NONCE_LEN {
        return Err(ApiError::invalid(format!("nonce must be {NONCE_LEN} bytes")));
    }
    // A peer's time may be anything: compared without arithmetic that could overflow.
    if now.abs_diff(c.sent_at_ms) > max_skew_ms.unsigned_abs() {
        return Err(ApiError::new(
            Reason::StaleRequest,
            format!(
                "challenge time is {} ms from this node's clock (at most {max_skew_ms} allowed)",
                i128::from(now) - i128::from(c.sent_at_ms)
            ),
        ));
    }
    let a = PingAnswer {
        from_zone: own_zone.to_string(),
        to_zone: caller_zone.to_string(),
        challenge_digest: sha256(&challenge.payload).to_vec(),
        answered_at_ms: now,
        registry_version: registry.version(),
    };
    Ok(envelope::seal(PayloadType::PING_ANSWER, &a, &[key]))
}

/// The caller's side: ping `zone` and check its answer.
pub(crate) async fn ping_peer(core: &Core, peers: &PeerClients, zone: &ZoneId) -> Result<PingPeerResponse, ApiError> {
    let registry = core.registry();
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| ApiError::internal("system random number generator failed"))?;
    let sent_at = core.now_ms();
    let challenge = PingChallenge {
        from_zone: core.zone.to_string(),
        to_zone: zone.to_string(),
        nonce: nonce.to_vec(),
        sent_at_ms: sent_at,
        registry_version: registry.version(),
    };
    let challenge = envelope::seal(PayloadType::PING_CHALLENGE, &challenge, &[&core.node_key]);
    let digest = sha256(&challenge.payload);

    let mut client = peers.client(zone)?;
    let started = Instant::now();
    let resp =
        client.ping(PingRequest { challenge: Some(challenge) }).await.map_err(|s| peer_failure(zone, &s))?.into_inner();
    let rtt = started.elapsed();

    let env = resp.answer.ok_or_else(|| {
        ApiError::new(Reason::PeerAnswerInvalid, format!("zone {zone} answered without a signed answer"))
    })?;
    let now = core.now_ms();
    let (a, signers): (PingAnswer, _) =
        envelope::open(&env, PayloadType::PING_ANSWER, node_key_lookup(&registry, zone, now))
            .map_err(|e| ApiError::new(Reason::PeerAnswerInvalid, format!("answer of zone {zone}: {e}")))?;
    if a.from_zone != zone.as_str() || a.to_zone != core.zone.as_str() || a.challenge_digest != digest {
        return Err(ApiError::new(
            Reason::PeerAnswerInvalid,
            format!("answer of zone {zone} is not bound to this challenge"),
        ));
    }
    let rtt_us = i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX);
    Ok(PingPeerResponse {
        zone_id: zone.to_string(),
        peer_registry_version: a.registry_version,
        peer_node_key_id: signers.first().map(ToString::to_string).unwrap_or_default(),
        round_trip_us: rtt_us,
        // The peer's clock minus ours, at the midpoint of the round trip.
        peer_clock_offset_ms: a.answered_at_ms.saturating_sub(sent_at.saturating_add(rtt_us / 2000)),
    })
}
