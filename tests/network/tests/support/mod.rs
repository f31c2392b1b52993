//! Shared by the network's tests: a network on a free port, agents that verify everything, and the child canister.

#![allow(dead_code)]

use candid::{Decode, Encode, Nat, Principal};
use ic_agent::identity::{BasicIdentity, Secp256k1Identity};
use ic_agent::{Agent, Identity};
use network::{Keys, Network, FIRST_CANISTER_INDEX};
use replica::ic00;
use shared::child::ChildInitArg;

pub fn start() -> Network {
    Network::start("127.0.0.1:0", Keys::generate()).expect("the network starts")
}

/// An Ed25519 identity (like ic-agent's and dfx's default kind).
pub fn ed25519(seed: u8) -> BasicIdentity {
    BasicIdentity::from_raw_key(&[seed; 32])
}

/// A secp256k1 identity (like icp-cli's and dfx's PEM identities).
pub fn secp256k1(seed: u8) -> Secp256k1Identity {
    Secp256k1Identity::from_private_key(k256::SecretKey::from_slice(&[seed; 32]).expect("a valid key"))
}

/// An agent that trusts `root_key` (verification stays on: certificates and query signatures are checked).
pub fn agent_with_root_key(network: &Network, identity: impl Identity + 'static, root_key: Vec<u8>) -> Agent {
    let agent = Agent::builder()
        .with_url(network.url())
        .with_identity(identity)
        .build()
        .expect("an agent");
    agent.set_root_key(root_key);
    agent
}

pub fn agent(network: &Network, identity: impl Identity + 'static) -> Agent {
    agent_with_root_key(network, identity, network.root_key().to_vec())
}

/// The id of the `n`-th canister this network creates.
pub fn canister_id(n: u64) -> Principal {
    Principal::from_slice(&[&(FIRST_CANISTER_INDEX + n).to_be_bytes()[..], &[1, 1]].concat())
}

pub fn child_wasm() -> Vec<u8> {
    fleet::wasms::read("wasm/child.wasm.gz")
}

/// Creates a canister with `provisional_create_canister_with_cycles` (at `specified_id` if given).
pub async fn create_canister(agent: &Agent, specified_id: Option<Principal>) -> Principal {
    let args = ic00::ProvisionalCreateCanisterWithCyclesArgs {
        amount: Some(Nat::from(10_000_000_000_000u64)),
        settings: None,
        specified_id,
        sender_canister_version: None,
    };
    let reply = agent
        .update(
            &Principal::management_canister(),
            "provisional_create_canister_with_cycles",
        )
        .with_effective_canister_id(specified_id.unwrap_or(canister_id(0)))
        .with_arg(Encode!(&args).unwrap())
        .call_and_wait()
        .await
        .expect("provisional_create_canister_with_cycles");
    Decode!(&reply, ic00::CanisterIdRecord).unwrap().canister_id
}

pub async fn install(agent: &Agent, canister_id: Principal, wasm_module: Vec<u8>, arg: Vec<u8>) {
    let args = ic00::InstallCodeArgs {
        mode: ic00::CanisterInstallMode::Install,
        canister_id,
        wasm_module,
        arg,
        sender_canister_version: None,
    };
    agent
        .update(&Principal::management_canister(), "install_code")
        .with_effective_canister_id(canister_id)
        .with_arg(Encode!(&args).unwrap())
        .call_and_wait()
        .await
        .expect("install_code");
}

/// A new child canister, installed by the agent's identity (its controller) with the agent as its parent.
pub async fn child(agent: &Agent) -> Principal {
    let id = create_canister(agent, None).await;
    let parent = agent.get_principal().unwrap();
    install(agent, id, child_wasm(), Encode!(&ChildInitArg { parent }).unwrap()).await;
    id
}

/// The same, directly on the replica (for tests of the HTTP front that need a canister but not an agent).
pub fn child_on_replica(network: &Network, controller: Principal) -> Principal {
    let wasm = child_wasm();
    network.with_replica(move |r| {
        let id = r.create_canister_with_settings(Some(controller), None);
        r.install_canister(
            id,
            wasm,
            Encode!(&ChildInitArg { parent: controller }).unwrap(),
            Some(controller),
        );
        id
    })
}
