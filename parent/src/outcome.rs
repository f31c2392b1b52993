//! What a management call reports, as the rollout sees it: plain values, no effects. `ic.rs` produces them; the
//! pure rollout consumes them.

use candid::Principal;
use shared::parent::ParentError;

/// Lowercase hex, for hashes in error texts.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// IC reject code SYS_UNKNOWN: a bounded-wait call whose outcome is unknown (it may or may not have taken effect).
pub const SYS_UNKNOWN: u32 = 6;
/// IC reject code DESTINATION_INVALID: for a management call, the canister it names does not exist.
pub const DESTINATION_INVALID: u32 = 3;

/// A failed call. `code` is the IC reject code, or 0 if the call was never sent or its reply did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub method: String,
    pub code: u32,
    pub message: String,
}

impl CallError {
    pub fn new(method: &str, code: u32, message: impl Into<String>) -> Self {
        Self {
            method: method.to_string(),
            code,
            message: message.into(),
        }
    }

    /// The call may or may not have taken effect: re-check with `canister_status`.
    pub fn is_unknown(&self) -> bool {
        self.code == SYS_UNKNOWN
    }

    /// The parent can no longer act on the child: it is not a controller, or the canister does not exist (IC reject
    /// code 3, DESTINATION_INVALID, "Canister ... not found").
    pub fn is_lost_control(&self) -> bool {
        self.is_not_controller() || self.code == DESTINATION_INVALID
    }

    /// A reject because the parent is not a controller of the target.
    pub fn is_not_controller(&self) -> bool {
        (3..=5).contains(&self.code) && self.message.to_lowercase().contains("controller")
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed (reject code {}): {}",
            self.method, self.code, self.message
        )
    }
}

impl From<CallError> for ParentError {
    fn from(e: CallError) -> Self {
        ParentError::CallFailed {
            method: e.method,
            code: e.code,
            message: e.message,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Stopping,
    Stopped,
}

/// What the parent needs from `canister_status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    pub status: RunStatus,
    pub module_hash: Option<Vec<u8>>,
    /// `None` if the reply carried no settings.
    pub controllers: Option<Vec<Principal>>,
    /// `None` if the reply did not say.
    pub funds: Option<Funds>,
}

/// What a child can pay, read with its status (the parent's own balance is read in the same message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Funds {
    pub balance: u128,
    /// The balance below which the child is frozen: its idle burn over its freezing threshold.
    pub freezing_limit: u128,
    /// The child's memory in bytes, its snapshots' included, and those snapshots' part of it.
    pub memory_size: u128,
    pub snapshots_size: u128,
    pub parent_balance: u128,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_controller_rejects_are_recognised() {
        let e = CallError::new(
            "canister_status",
            5,
            "Only controllers of canister aaaaa-aa can call ic00 method canister_status",
        );
        assert!(e.is_not_controller());
        assert!(!CallError::new("canister_status", 3, "Canister xyz not found").is_not_controller());
        assert!(!CallError::new("canister_status", 2, "controller queue full").is_not_controller());
    }

    #[test]
    fn lost_control_means_not_a_controller_or_no_canister() {
        let gone = CallError::new("start_canister", 3, "Canister xyz not found");
        let not_controller = CallError::new("start_canister", 5, "Only controllers of canister xyz can call");
        let transient = CallError::new("start_canister", 2, "queue full");
        let unknown = CallError::new("start_canister", SYS_UNKNOWN, "timed out");
        assert!(gone.is_lost_control() && not_controller.is_lost_control());
        assert!(!transient.is_lost_control() && !unknown.is_lost_control());
    }
}
