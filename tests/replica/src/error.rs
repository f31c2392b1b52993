//! Reject codes and rejects, numbered as in the IC interface spec ("Reject codes").

use std::fmt;

/// The spec's reject codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
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
