//! Installing and listing mutual-recognition agreements on this node.

use ftz_policy::{
    Agreement,
    agreement::{AgreementDecision, check_install},
};
use ftz_proto::Envelope;
use ftz_store::Store;
use prost::Message;

use crate::{error::ApiError, server::StartError, state::NodeState};

/// The agreements in the store, as installed (they were checked then).
pub(crate) fn load(store: &Store) -> Result<Vec<Agreement>, StartError> {
    let mut out = Vec::new();
    for (id, bytes) in store.agreements()? {
        let env = Envelope::decode(bytes.as_slice()).map_err(|e| StartError::Agreements(format!("{id}: {e}")))?;
        out.push(Agreement::parse(env).map_err(|e| StartError::Agreements(format!("{id}: {e}")))?);
    }
    Ok(out)
}

/// Installs `candidate` if the rules allow it; durable before the in-memory set changes.
pub async fn install(state: &NodeState, candidate: Agreement) -> Result<(Agreement, bool), ApiError> {
    let _guard = state.agreement_lock.lock().await;
    let current = state.agreements();
    let installed = current.iter().find(|a| a.id() == candidate.id());
    let registry = state.registry();
    match check_install(&candidate, &registry, &state.zone, installed, state.now_ms())? {
        AgreementDecision::AlreadyInstalled => return Ok((candidate, true)),
        AgreementDecision::Install { signers } => {
            tracing::info!(
                agreement = candidate.id(),
                version = candidate.version(),
                from = %candidate.from,
                to = %candidate.to,
                signers = ?signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "recognition agreement installed"
            );
        }
    }
    let bytes = candidate.envelope.encode_to_vec();
    let expected = installed.map(|a| a.envelope.encode_to_vec());
    state.store.write_durably(|s| s.put_agreement(candidate.id(), &bytes, expected.as_deref())).await?;
    let mut next: Vec<Agreement> = current.iter().filter(|a| a.id() != candidate.id()).cloned().collect();
    next.push(candidate.clone());
    state.set_agreements(next);
    let digest = ftz_core::sha256(&candidate.envelope.payload);
    crate::audit::log_config(state, "agreement", candidate.id(), candidate.version(), digest).await;
    Ok((candidate, false))
}
