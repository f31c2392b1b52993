//! From a PocketIC `InstanceConfig` to the replica's configuration. This server runs exactly one application subnet;
//! every setting it cannot honour is named in the error instead of being ignored.

use std::time::Duration;

use pocket_ic::common::rest::{
    CanisterCyclesCostSchedule, IcpConfig, IcpFeatures, IncompleteStateFlag, InitialTime, InstanceConfig,
    SubnetInstructionConfig, SubnetSpec,
};
use replica::ReplicaConfig;
use sha2::{Digest, Sha256};

/// PocketIC's default initial time, which is also the earliest it accepts: 2021-05-06T19:17:10Z.
pub const DEFAULT_TIME_NANOS: u64 = 1_620_328_630_000_000_000;

/// PocketIC's `tick` advances the time by 1 ns.
pub const ROUND_DURATION: Duration = Duration::from_nanos(1);

/// The DER framing of an IC root key (a BLS12-381 public key in G2); the 96 key bytes follow.
const ROOT_KEY_DER_PREFIX: &str = "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100";

/// The replica configuration for instance `instance_id` with `config`, or a message listing every setting this
/// server does not support.
pub fn replica_config(config: &InstanceConfig, instance_id: usize) -> Result<ReplicaConfig, String> {
    let mut unsupported = Vec::new();
    let subnets = &config.subnet_config_set;
    for (name, present) in [
        ("an NNS subnet", subnets.nns.is_some()),
        ("an SNS subnet", subnets.sns.is_some()),
        ("an II subnet", subnets.ii.is_some()),
        ("a fiduciary subnet", subnets.fiduciary.is_some()),
        ("a bitcoin subnet", subnets.bitcoin.is_some()),
        ("a test threshold keys subnet", subnets.test_threshold_keys.is_some()),
        ("system subnets", !subnets.system.is_empty()),
        ("cloud engine subnets", !subnets.cloud_engine.is_empty()),
        ("verified application subnets", !subnets.verified_application.is_empty()),
    ] {
        if present {
            unsupported.push(name.to_string());
        }
    }
    match subnets.application.as_slice() {
        [spec] => unsupported.extend(subnet_spec_issues(spec)),
        [] => unsupported.push("an instance without an application subnet".into()),
        more => unsupported.push(format!("{} application subnets", more.len())),
    }
    for (name, present) in [
        ("http_gateway_config", config.http_gateway_config.is_some()),
        ("state_dir (state is not persisted)", config.state_dir.is_some()),
        ("bitcoind_addr", config.bitcoind_addr.is_some()),
        ("dogecoind_addr", config.dogecoind_addr.is_some()),
        ("mainnet_nns_subnet_id", config.mainnet_nns_subnet_id == Some(true)),
        (
            "incomplete_state",
            matches!(config.incomplete_state, Some(IncompleteStateFlag::Enabled)),
        ),
        (
            "icp_config flags",
            config.icp_config.as_ref().is_some_and(|c| c != &IcpConfig::default()),
        ),
        (
            "icp_features (system canisters)",
            config
                .icp_features
                .as_ref()
                .is_some_and(|f| f != &IcpFeatures::default()),
        ),
    ] {
        if present {
            unsupported.push(name.to_string());
        }
    }
    let start_time_nanos = match &config.initial_time {
        None => DEFAULT_TIME_NANOS,
        Some(InitialTime::Timestamp(t)) if t.nanos_since_epoch >= DEFAULT_TIME_NANOS => t.nanos_since_epoch,
        Some(InitialTime::Timestamp(t)) => {
            return Err(format!(
                "the initial time {} ns is before {DEFAULT_TIME_NANOS} ns (2021-05-06T19:17:10Z), the earliest PocketIC accepts",
                t.nanos_since_epoch
            ))
        }
        Some(InitialTime::AutoProgress(_)) => {
            unsupported.push("initial_time AutoProgress (live mode)".into());
            DEFAULT_TIME_NANOS
        }
    };
    if !unsupported.is_empty() {
        return Err(format!(
            "this server runs one application subnet on the in-process replica; not supported: {}",
            unsupported.join(", ")
        ));
    }
    Ok(ReplicaConfig {
        start_time_nanos,
        round_duration: ROUND_DURATION,
        root_key: Some(root_key(instance_id)),
        ..ReplicaConfig::default()
    })
}

/// A root key of its own for every instance, so that each has its own subnet id (the key's self-authenticating
/// principal). Nothing is signed here, so the key bytes are a hash, not a BLS key.
fn root_key(instance_id: usize) -> Vec<u8> {
    let mut key = hex::decode(ROOT_KEY_DER_PREFIX).expect("DER prefix");
    for part in 0..3u8 {
        let mut hash = Sha256::new();
        hash.update(b"pocket-ic-server root key");
        hash.update((instance_id as u64).to_be_bytes());
        hash.update([part]);
        key.extend(hash.finalize());
    }
    key
}

fn subnet_spec_issues(spec: &SubnetSpec) -> Vec<String> {
    let mut issues = Vec::new();
    if !spec.is_supported() || spec.get_state_path().is_some() {
        issues.push("subnet state loaded from a path or blob".to_string());
    }
    if spec.get_instruction_config() != SubnetInstructionConfig::Production {
        issues.push("benchmarking instruction limits".to_string());
    }
    if spec.get_subnet_admins().is_some() {
        issues.push("subnet admins".to_string());
    }
    if spec.get_cost_schedule() != CanisterCyclesCostSchedule::Normal {
        issues.push("a free cost schedule".to_string());
    }
    issues
}
