//! Between the replica's types and the PocketIC REST types.

use candid::Principal;
use pocket_ic::common::rest::RawCanisterResult;
use pocket_ic::{ErrorCode, RejectCode, RejectResponse};
use replica::Reject;

use crate::answer::ApiError;

/// A principal from its raw bytes; `what` names the field in the error.
pub fn principal(bytes: &[u8], what: &str) -> Result<Principal, ApiError> {
    Principal::try_from_slice(bytes).map_err(|e| ApiError::bad_request(format!("{what} is not a principal: {e}")))
}

/// The client's view of a reject. `certified` is true for update calls (their result is in the state tree) and
/// false for queries, as in PocketIC.
pub fn reject_response(reject: &Reject, certified: bool) -> RejectResponse {
    let reject_code = match reject.code {
        replica::RejectCode::SysFatal => RejectCode::SysFatal,
        replica::RejectCode::SysTransient => RejectCode::SysTransient,
        replica::RejectCode::DestinationInvalid => RejectCode::DestinationInvalid,
        replica::RejectCode::CanisterReject => RejectCode::CanisterReject,
        replica::RejectCode::CanisterError => RejectCode::CanisterError,
        replica::RejectCode::SysUnknown => RejectCode::SysUnknown,
    };
    RejectResponse {
        reject_code,
        reject_message: reject.message.clone(),
        error_code: error_code(reject),
        certified,
    }
}

/// The IC error code the replica gave (`IC0503` → `CanisterCalledTrap`), else a generic one of the reject's class:
/// the client's `RejectResponse` always carries one.
fn error_code(reject: &Reject) -> ErrorCode {
    let given = reject
        .error_code
        .and_then(|code| code.strip_prefix("IC"))
        .and_then(|digits| digits.parse::<u64>().ok())
        .and_then(|n| ErrorCode::try_from(n).ok());
    given.unwrap_or(match reject.code {
        replica::RejectCode::SysFatal => ErrorCode::SubnetOversubscribed,
        replica::RejectCode::SysTransient => ErrorCode::CanisterQueueFull,
        replica::RejectCode::DestinationInvalid => ErrorCode::CanisterNotFound,
        replica::RejectCode::CanisterReject => ErrorCode::CanisterRejectedMessage,
        replica::RejectCode::CanisterError => ErrorCode::CanisterTrapped,
        replica::RejectCode::SysUnknown => ErrorCode::DeadlineExpired,
    })
}

pub fn canister_result(result: Result<Vec<u8>, Reject>, certified: bool) -> RawCanisterResult {
    match result {
        Ok(bytes) => RawCanisterResult::Ok(bytes),
        Err(reject) => RawCanisterResult::Err(reject_response(&reject, certified)),
    }
}
