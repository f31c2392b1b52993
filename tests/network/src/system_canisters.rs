//! The two system canisters icp-cli needs to create a canister, answered by the network itself at their mainnet
//! ids: the cycles minting canister's `get_default_subnets`, and the cycles ledger's `create_canister`, which this
//! network turns into `provisional_create_canister_with_cycles` on behalf of the caller (no cycles are debited:
//! every user of a local network has as many as they ask for).

use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use replica::{ic00, Reject, RejectCode};

/// The cycles minting canister (CMC) on mainnet.
pub const CYCLES_MINTING_CANISTER: Principal = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 4, 1, 1]);
/// The cycles ledger on mainnet.
pub const CYCLES_LEDGER: Principal = Principal::from_slice(&[0, 0, 0, 0, 2, 0x10, 0, 2, 1, 1]);

pub fn is_system_canister(id: Principal) -> bool {
    id == CYCLES_MINTING_CANISTER || id == CYCLES_LEDGER
}

/// What a call to a system canister turns into.
pub enum Answer {
    /// The reply (Candid).
    Reply(Vec<u8>),
    /// A reject, as the real canister's on a bad argument or an unknown method.
    Reject(Reject),
    /// A `provisional_create_canister_with_cycles` call to submit for the caller; its outcome becomes the reply
    /// through [`ledger_reply`].
    Create(Box<ic00::ProvisionalCreateCanisterWithCyclesArgs>),
}

/// Answers `method` of a system canister, called by query or update.
pub fn call(canister: Principal, method: &str, arg: &[u8], subnet: Principal) -> Answer {
    match (canister, method) {
        (CYCLES_MINTING_CANISTER, "get_default_subnets") => Answer::Reply(Encode!(&vec![subnet]).expect("encode")),
        (CYCLES_LEDGER, "create_canister") => match Decode!(arg, CreateCanisterArgs) {
            Ok(args) => Answer::Create(Box::new(ic00::ProvisionalCreateCanisterWithCyclesArgs {
                amount: Some(args.amount),
                settings: args.creation_args.and_then(|c| c.settings),
                specified_id: None,
                sender_canister_version: None,
            })),
            Err(e) => Answer::Reject(
                Reject::new(
                    RejectCode::CanisterError,
                    format!("Error from Canister {canister}: failed to decode the create_canister argument: {e}"),
                )
                .with_error_code("IC0503"),
            ),
        },
        _ => Answer::Reject(
            Reject::new(
                RejectCode::CanisterError,
                format!(
                    "Error from Canister {canister}: Canister has no method '{method}' on this local network (it \
                     answers only the CMC's get_default_subnets and the cycles ledger's create_canister)."
                ),
            )
            .with_error_code("IC0536"),
        ),
    }
}

/// The cycles ledger's reply to `create_canister`, from the outcome of the provisional creation.
pub fn ledger_reply(created: Result<Vec<u8>, String>, block_id: u64) -> Vec<u8> {
    let result: Result<CreateCanisterSuccess, CreateCanisterError> =
        match created.and_then(|bytes| Decode!(&bytes, ic00::CanisterIdRecord).map_err(|e| e.to_string())) {
            Ok(record) => Ok(CreateCanisterSuccess {
                block_id: Nat::from(block_id),
                canister_id: record.canister_id,
            }),
            Err(error) => Err(CreateCanisterError::FailedToCreate {
                fee_block: None,
                refund_block: None,
                error,
            }),
        };
    Encode!(&result).expect("encode")
}

/// The cycles ledger's `create_canister` argument (fields this network does not use are skipped by Candid).
#[derive(CandidType, Deserialize)]
struct CreateCanisterArgs {
    amount: Nat,
    creation_args: Option<CmcCreateCanisterArgs>,
}

#[derive(CandidType, Deserialize)]
struct CmcCreateCanisterArgs {
    settings: Option<ic00::CanisterSettings>,
}

#[derive(CandidType, Deserialize, Debug, PartialEq)]
struct CreateCanisterSuccess {
    block_id: Nat,
    canister_id: Principal,
}

#[derive(CandidType, Deserialize, Debug, PartialEq)]
enum CreateCanisterError {
    FailedToCreate {
        fee_block: Option<Nat>,
        refund_block: Option<Nat>,
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mainnet_ids_are_the_ones_icp_cli_calls() {
        assert_eq!(CYCLES_MINTING_CANISTER.to_text(), "rkp4c-7iaaa-aaaaa-aaaca-cai");
        assert_eq!(CYCLES_LEDGER.to_text(), "um5iw-rqaaa-aaaaq-qaaba-cai");
    }

    #[test]
    fn create_canister_becomes_a_provisional_creation_with_the_amount_and_settings() {
        // The argument as the cycles ledger's interface spells it, with fields this network ignores.
        #[derive(CandidType)]
        struct SubnetSelection {
            subnet: Principal,
        }
        #[derive(CandidType)]
        struct FullCmcArgs {
            settings: Option<ic00::CanisterSettings>,
            subnet_selection: Option<SubnetSelection>,
        }
        #[derive(CandidType)]
        struct FullArgs {
            from_subaccount: Option<Vec<u8>>,
            created_at_time: Option<u64>,
            amount: Nat,
            creation_args: Option<FullCmcArgs>,
        }
        let me = Principal::from_slice(&[9; 29]);
        let arg = Encode!(&FullArgs {
            from_subaccount: None,
            created_at_time: Some(5),
            amount: Nat::from(2_000_000_000_000u64),
            creation_args: Some(FullCmcArgs {
                settings: Some(ic00::CanisterSettings {
                    controllers: Some(vec![me]),
                    ..Default::default()
                }),
                subnet_selection: Some(SubnetSelection { subnet: me }),
            }),
        })
        .unwrap();
        let Answer::Create(create) = call(CYCLES_LEDGER, "create_canister", &arg, me) else {
            panic!("a creation");
        };
        assert_eq!(create.amount, Some(Nat::from(2_000_000_000_000u64)));
        assert_eq!(create.settings.unwrap().controllers, Some(vec![me]));
        assert!(matches!(
            call(CYCLES_LEDGER, "create_canister", b"junk", me),
            Answer::Reject(_)
        ));
        assert!(matches!(
            call(CYCLES_LEDGER, "icrc1_transfer", &arg, me),
            Answer::Reject(_)
        ));
    }

    #[test]
    fn the_ledger_replies_ok_with_the_new_id_or_failed_to_create() {
        let id = Principal::from_slice(&[1; 10]);
        let created = Encode!(&ic00::CanisterIdRecord { canister_id: id }).unwrap();
        let ok = Decode!(&ledger_reply(Ok(created), 7), Result<CreateCanisterSuccess, CreateCanisterError>).unwrap();
        assert_eq!(
            ok,
            Ok(CreateCanisterSuccess {
                block_id: Nat::from(7u32),
                canister_id: id
            })
        );
        let failed = Decode!(&ledger_reply(Err("no".into()), 8), Result<CreateCanisterSuccess, CreateCanisterError>);
        assert!(matches!(failed.unwrap(), Err(CreateCanisterError::FailedToCreate { error, .. }) if error == "no"));
    }

    #[test]
    fn the_cmc_names_this_subnet_as_the_default() {
        let subnet = Principal::from_slice(&[3; 29]);
        let Answer::Reply(bytes) = call(
            CYCLES_MINTING_CANISTER,
            "get_default_subnets",
            &Encode!().unwrap(),
            subnet,
        ) else {
            panic!("a reply");
        };
        assert_eq!(Decode!(&bytes, Vec<Principal>).unwrap(), vec![subnet]);
    }
}
