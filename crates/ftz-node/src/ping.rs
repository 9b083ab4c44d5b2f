//! The signed ping between nodes: the caller signs a challenge with its node key, the callee
//! answers with a signed statement bound to that challenge. Each side checks the other's
//! signature against the node keys the registry lists, so a ping proves more than TLS did: both
//! nodes hold the run-time keys the authorities registered for them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ftz_core::{
    Reason, Registry, SigningKey, UnixMillis, ZoneId,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_proto::{Envelope, KeyPurpose, PeerHealth, PingAnswer, PingChallenge, PingPeerResponse, PingRequest};
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

/// How long a refresh of every peer waits for each answer: a peer that is down must not hold
/// the admin's page for the whole peer call deadline.
pub(crate) const REFRESH_DEADLINE: Duration = Duration::from_secs(3);

/// What this node learnt of one peer by pinging it.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// When the last successful ping was answered, and what it proved.
    ok: Option<(UnixMillis, PingPeerResponse)>,
    /// When the last ping failed, and why.
    failure: Option<(UnixMillis, Reason, String)>,
    pings: u64,
    failures: u64,
}

/// Pings of other zones' nodes, with the outcome of the last success and the last failure per
/// zone kept in memory (a restart forgets them; the next ping tells again). Only zones the
/// registry lists are kept, so the map is bounded by the registry.
pub(crate) struct Pings {
    core: Arc<Core>,
    peers: Arc<PeerClients>,
    seen: Mutex<HashMap<ZoneId, Seen>>,
}

impl Pings {
    pub(crate) fn new(core: Arc<Core>, peers: Arc<PeerClients>) -> Self {
        Self { core, peers, seen: Mutex::default() }
    }

    /// Pings `zone` (see [`ping_peer`]) and remembers how it went.
    pub(crate) async fn ping(&self, zone: &ZoneId) -> Result<PingPeerResponse, ApiError> {
        let r = ping_peer(&self.core, &self.peers, zone).await;
        self.record(zone, &r);
        r
    }

    /// Pings every other zone of the registry at once, each within `deadline`.
    pub(crate) async fn ping_all(&self, deadline: Duration) {
        let registry = self.core.registry();
        let zones: Vec<ZoneId> = registry.zones().filter(|z| z.id != self.core.zone).map(|z| z.id.clone()).collect();
        futures_util::future::join_all(zones.iter().map(|zone| async move {
            let r = match tokio::time::timeout(deadline, ping_peer(&self.core, &self.peers, zone)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::new(
                    Reason::PeerUnavailable,
                    format!("zone {zone} did not answer within {} ms", deadline.as_millis()),
                )),
            };
            self.record(zone, &r);
        }))
        .await;
    }

    fn record(&self, zone: &ZoneId, r: &Result<PingPeerResponse, ApiError>) {
        if self.core.registry().zone(zone).is_none() {
            return;
        }
        let now = self.core.now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry(zone.clone()).or_default();
        s.pings += 1;
        match r {
            Ok(p) => s.ok = Some((now, p.clone())),
            Err(e) => {
                s.failures += 1;
                s.failure = Some((now, e.reason, e.message.clone()));
            }
        }
    }

    /// Every other zone of the registry in force, in its order, with what the last pings of it
    /// found.
    pub(crate) fn health(&self) -> Vec<PeerHealth> {
        let registry = self.core.registry();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        registry
            .zones()
            .filter(|z| z.id != self.core.zone)
            .map(|z| {
                let s = seen.get(&z.id).cloned().unwrap_or_default();
                let mut h = PeerHealth {
                    zone_id: z.id.to_string(),
                    endpoint: z.endpoint.clone(),
                    pings: s.pings,
                    failures: s.failures,
                    ..Default::default()
                };
                if let Some((at, p)) = s.ok {
                    h.last_ok_ms = at;
                    h.round_trip_us = p.round_trip_us;
                    h.peer_registry_version = p.peer_registry_version;
                    h.peer_node_key_id = p.peer_node_key_id;
                    h.peer_clock_offset_ms = p.peer_clock_offset_ms;
                }
                if let Some((at, reason, message)) = s.failure {
                    h.last_failure_ms = at;
                    h.last_failure_reason = reason.to_string();
                    h.last_error = format!("{reason}: {message}");
                }
                h
            })
            .collect()
    }
}
