//! Reject codes, the IC's error codes, rejects and traps (spec "Reject codes"; `ic-error-types` `ErrorCode`;
//! dfinity/ic `rs/interfaces/src/execution_environment/errors.rs` `HypervisorError`).

use std::fmt;

use candid::Principal;

/// The spec's reject codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
    /// Only for bounded-wait calls whose response is unknown (ic-error-types: "best-effort calls only").
    SysUnknown = 6,
}

impl RejectCode {
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::SysFatal,
            2 => Self::SysTransient,
            3 => Self::DestinationInvalid,
            4 => Self::CanisterReject,
            5 => Self::CanisterError,
            6 => Self::SysUnknown,
            _ => return None,
        })
    }
}

/// The IC's error codes that this replica produces (dfinity/ic `ic-error-types` `ErrorCode`; the first digit is the
/// reject code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    CanisterQueueFull = 201,
    StopCanisterRequestTimeout = 206,
    CanisterOutOfCycles = 207,
    CanisterInstallCodeRateLimited = 209,
    CanisterNotFound = 301,
    CanisterSnapshotNotFound = 305,
    InsufficientCyclesForCreateCanister = 403,
    CanisterRejectedMessage = 406,
    UnknownManagementMessage = 407,
    InvalidManagementPayload = 408,
    CanisterTrapped = 502,
    CanisterCalledTrap = 503,
    CanisterContractViolation = 504,
    CanisterInvalidWasm = 505,
    CanisterDidNotReply = 506,
    CanisterOutOfMemory = 507,
    CanisterStopped = 508,
    CanisterStopping = 509,
    CanisterNotStopped = 510,
    CanisterStoppingCancelled = 511,
    CanisterInvalidController = 512,
    CanisterFunctionNotFound = 513,
    CanisterNonEmpty = 514,
    CanisterInstructionLimitExceeded = 522,
    CompositeQueryCalledInReplicatedMode = 527,
    InsufficientCyclesInMemoryGrow = 532,
    CanisterMethodNotFound = 536,
    CanisterWasmModuleNotFound = 537,
    CanisterAlreadyInstalled = 538,
}

impl ErrorCode {
    /// `IC0xxx`, as the IC writes it in rejects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CanisterQueueFull => "IC0201",
            Self::StopCanisterRequestTimeout => "IC0206",
            Self::CanisterOutOfCycles => "IC0207",
            Self::CanisterInstallCodeRateLimited => "IC0209",
            Self::CanisterNotFound => "IC0301",
            Self::CanisterSnapshotNotFound => "IC0305",
            Self::InsufficientCyclesForCreateCanister => "IC0403",
            Self::CanisterRejectedMessage => "IC0406",
            Self::UnknownManagementMessage => "IC0407",
            Self::InvalidManagementPayload => "IC0408",
            Self::CanisterTrapped => "IC0502",
            Self::CanisterCalledTrap => "IC0503",
            Self::CanisterContractViolation => "IC0504",
            Self::CanisterInvalidWasm => "IC0505",
            Self::CanisterDidNotReply => "IC0506",
            Self::CanisterOutOfMemory => "IC0507",
            Self::CanisterStopped => "IC0508",
            Self::CanisterStopping => "IC0509",
            Self::CanisterNotStopped => "IC0510",
            Self::CanisterStoppingCancelled => "IC0511",
            Self::CanisterInvalidController => "IC0512",
            Self::CanisterFunctionNotFound => "IC0513",
            Self::CanisterNonEmpty => "IC0514",
            Self::CanisterInstructionLimitExceeded => "IC0522",
            Self::CompositeQueryCalledInReplicatedMode => "IC0527",
            Self::InsufficientCyclesInMemoryGrow => "IC0532",
            Self::CanisterMethodNotFound => "IC0536",
            Self::CanisterWasmModuleNotFound => "IC0537",
            Self::CanisterAlreadyInstalled => "IC0538",
        }
    }

    /// The reject code: the first digit of the error code.
    pub fn reject_code(self) -> RejectCode {
        RejectCode::from_u32(self as u32 / 100).expect("error codes start with a reject code")
    }
}

/// A rejected call: the reject code, the message, and the IC error code (`IC0xxx`) where the IC has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
    pub error_code: Option<&'static str>,
}

impl Reject {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            error_code: None,
        }
    }

    /// A reject with the IC's error code; its reject code follows from the error code.
    pub fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.reject_code(),
            message: message.into(),
            error_code: Some(code.as_str()),
        }
    }

    pub fn with_error_code(mut self, error_code: &'static str) -> Self {
        self.error_code = Some(error_code);
        self
    }

    pub(crate) fn canister_error(message: impl Into<String>) -> Self {
        Self::new(RejectCode::CanisterError, message)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reject {:?} ({})", self.code, self.code as u32)?;
        if let Some(error_code) = self.error_code {
            write!(f, " {error_code}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Reject {}

/// Why an execution failed, as the IC describes it (`HypervisorError`): its error code (none for this replica's
/// own limits), its text, and whether the IC follows the text with an error-help line, in which case the reject
/// ends the text with a period (the help line itself is not reproduced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    pub code: Option<ErrorCode>,
    pub text: String,
    pub help: bool,
}

impl Trap {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            text: text.into(),
            help: true,
        }
    }

    /// A failure the IC reports without an error-help line.
    pub fn without_help(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            help: false,
            ..Self::new(code, text)
        }
    }

    /// A trap in a reply or reject callback followed by one in its cleanup callback (`HypervisorError::Cleanup`):
    /// both texts, the callback's error code, no help line.
    pub fn with_cleanup(callback: Trap, cleanup: Trap) -> Self {
        Self {
            code: callback.code,
            text: format!("{}\n\ncall_on_cleanup also failed:\n\n{}", callback.text, cleanup.text),
            help: false,
        }
    }

    /// The reject a caller gets (`into_user_error`): "Error from Canister <id>: <text>".
    pub fn reject(&self, canister: Principal) -> Reject {
        let period = if self.help { "." } else { "" };
        let message = format!("Error from Canister {canister}: {}{period}", self.text);
        match self.code {
            Some(code) => Reject::of(code, message),
            None => Reject::canister_error(message),
        }
    }
}
