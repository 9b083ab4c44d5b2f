//! Whether the log may grow. A node restored from a backup may hold less of its own log than
//! the other zones' witnesses have cosigned: appending then would sign a second history for
//! sizes already published (equivocation). Until its witnesses have confirmed the restored log
//! (ftz-node's `restored`), the gate is shut: every append and every checkpoint is refused
//! with `LOG_BEHIND_WITNESSES`; reads go on.

use std::sync::RwLock;

use ftz_core::Reason;

use crate::error::ApiError;

/// What one witness said it holds of this log, after a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WitnessView {
    pub zone: String,
    pub answered: bool,
    pub held_size: u64,
    /// Why it blocks the log; empty if it does not.
    pub conflict: String,
}

#[derive(Debug, Default)]
struct State {
    /// Why the log refuses to grow; `None`: it may.
    blocked: Option<String>,
    witnesses: Vec<WitnessView>,
}

#[derive(Debug, Default)]
pub(crate) struct LogGate(RwLock<State>);

impl LogGate {
    pub(crate) fn shut(why: String) -> Self {
        Self(RwLock::new(State { blocked: Some(why), witnesses: Vec::new() }))
    }

    /// `Ok` if the log may grow, else the refusal every caller that would write gets.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        match &self.0.read().unwrap_or_else(|e| e.into_inner()).blocked {
            None => Ok(()),
            Some(why) => Err(ApiError::new(Reason::LogBehindWitnesses, why.clone())),
        }
    }

    pub(crate) fn blocked(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).blocked.clone()
    }

    pub(crate) fn witnesses(&self) -> Vec<WitnessView> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).witnesses.clone()
    }

    /// Records what the witnesses said and whether the log stays shut (`Some(why)`) or opens.
    pub(crate) fn set(&self, blocked: Option<String>, witnesses: Vec<WitnessView>) {
        let mut s = self.0.write().unwrap_or_else(|e| e.into_inner());
        s.blocked = blocked;
        s.witnesses = witnesses;
    }
}
