//! Request envelopes as the IC checks them (spec "Authentication", "Request expiry"): decoding, `ingress_expiry`,
//! the sender's key and signature, and sender delegations. Failures are the IC's 400 answers.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use candid::Principal;
use ic_transport_types::{Envelope, EnvelopeContent, RequestId};

use crate::HttpError;

/// How far in the future `ingress_expiry` may lie: the IC's 5-minute ingress TTL plus 30 s of permitted clock drift.
pub const MAX_EXPIRY_AHEAD: Duration = Duration::from_secs(5 * 60 + 30);

const REQUEST_DOMAIN: &[u8] = b"\x0Aic-request";

/// The canisters a request may target: `None` for all (no delegation restricts them).
pub type Targets = Option<BTreeSet<Principal>>;

/// Decodes a request body: a CBOR envelope.
pub fn decode(body: &[u8]) -> Result<Envelope<'static>, HttpError> {
    serde_cbor::from_slice(body).map_err(|e| HttpError::bad_request(format!("Failed to deserialize cbor request: {e}")))
}

/// Checks the expiry, the sender and the signatures of a decoded request at time `now` (ns since the epoch);
/// returns the canisters it may target.
pub fn authenticate(envelope: &Envelope, request_id: &RequestId, now: u64) -> Result<Targets, HttpError> {
    check_expiry(envelope.content.ingress_expiry(), now)?;
    let sender = *envelope.content.sender();
    let signed = (&envelope.sender_pubkey, &envelope.sender_sig);
    if sender == Principal::anonymous() {
        if envelope.sender_pubkey.is_some() || envelope.sender_sig.is_some() || envelope.sender_delegation.is_some() {
            return Err(HttpError::bad_request(
                "Signature is not allowed for the anonymous user",
            ));
        }
        return Ok(None);
    }
    let (Some(pubkey), Some(signature)) = signed else {
        return Err(HttpError::bad_request(format!("Missing signature from user: {sender}")));
    };
    if Principal::self_authenticating(pubkey) != sender {
        return Err(HttpError::bad_request(format!(
            "The user id {sender} does not match the public key {}",
            hex::encode(pubkey)
        )));
    }
    let mut key = pubkey.clone();
    let mut targets: Targets = None;
    for signed in envelope.sender_delegation.iter().flatten() {
        let delegation = &signed.delegation;
        if delegation.expiration < now {
            return Err(HttpError::bad_request(format!(
                "Invalid delegation expiry: Specified sender delegation has expired: Provided expiry: {}, Local time: {}",
                format_time(delegation.expiration),
                format_time(now)
            )));
        }
        verify(&key, &delegation.signable(), &signed.signature)
            .map_err(|e| HttpError::bad_request(format!("Invalid delegation: {e}")))?;
        if let Some(allowed) = &delegation.targets {
            let allowed: BTreeSet<Principal> = allowed.iter().copied().collect();
            targets = Some(match targets {
                None => allowed,
                Some(before) => before.intersection(&allowed).copied().collect(),
            });
        }
        key = delegation.pubkey.clone();
    }
    let message = [REQUEST_DOMAIN, request_id.as_slice()].concat();
    verify(&key, &message, signature).map_err(|e| HttpError::bad_request(format!("Invalid signature: {e}")))?;
    Ok(targets)
}

/// The canister a call or query is addressed to must be one the delegations allow.
pub fn check_target(targets: &Targets, content: &EnvelopeContent) -> Result<(), HttpError> {
    let canister = match content {
        EnvelopeContent::Call { canister_id, .. } | EnvelopeContent::Query { canister_id, .. } => canister_id,
        EnvelopeContent::ReadState { .. } => return Ok(()),
    };
    match targets {
        Some(allowed) if !allowed.contains(canister) => Err(HttpError::bad_request(format!(
            "Canister {canister} is not one of the delegation targets"
        ))),
        _ => Ok(()),
    }
}

fn check_expiry(expiry: u64, now: u64) -> Result<(), HttpError> {
    let max = now + MAX_EXPIRY_AHEAD.as_nanos() as u64;
    if (now..=max).contains(&expiry) {
        return Ok(());
    }
    Err(HttpError::bad_request(format!(
        "Invalid request expiry: Specified ingress_expiry not within expected range: Minimum allowed expiry: {}, \
         Maximum allowed expiry: {}, Provided expiry: {}",
        format_time(now),
        format_time(max),
        format_time(expiry)
    )))
}

/// A time as the IC prints it in these messages: `2026-01-01 00:00:00.000000001 UTC`.
fn format_time(nanos: u64) -> String {
    let rfc3339 = humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string();
    format!("{} UTC", rfc3339.trim_end_matches('Z').replacen('T', " ", 1))
}

/// Verifies a basic signature by a DER-encoded public key: Ed25519, ECDSA secp256k1 or ECDSA P-256 (the key types
/// of ic-agent, icp-cli and dfx identities). WebAuthn and canister signatures are not supported here.
fn verify(public_key_der: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    use k256::pkcs8::DecodePublicKey;
    use p256::ecdsa::signature::Verifier;

    if let Ok(key) = ic_ed25519::PublicKey::deserialize_rfc8410_der(public_key_der) {
        return key
            .verify_signature(message, signature)
            .map_err(|e| format!("Invalid basic signature: Ed25519 signature could not be verified: {e}"));
    }
    if let Ok(key) = k256::ecdsa::VerifyingKey::from_public_key_der(public_key_der) {
        let signature = k256::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
        return key
            .verify(message, &signature)
            .map_err(|_| "Invalid basic signature: EcdsaSecp256k1 signature could not be verified".to_string());
    }
    if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(public_key_der) {
        let signature = p256::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
        return key
            .verify(message, &signature)
            .map_err(|_| "Invalid basic signature: EcdsaP256 signature could not be verified".to_string());
    }
    Err(format!(
        "Invalid public key: unsupported key {} (this network verifies Ed25519, ECDSA secp256k1 and ECDSA P-256 keys)",
        hex::encode(public_key_der)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_transport_types::{Delegation, SignedDelegation};

    const NOW: u64 = 1_800_000_000_000_000_000;

    struct Signer(ic_ed25519::PrivateKey);

    impl Signer {
        fn new(seed: u8) -> Self {
            Self(ic_ed25519::PrivateKey::generate_from_seed(&[seed; 32]))
        }
        fn der(&self) -> Vec<u8> {
            self.0.public_key().serialize_rfc8410_der()
        }
        fn principal(&self) -> Principal {
            Principal::self_authenticating(self.der())
        }
    }

    fn query(sender: Principal, expiry: u64) -> EnvelopeContent {
        EnvelopeContent::Query {
            ingress_expiry: expiry,
            sender,
            canister_id: Principal::from_slice(&[1, 2, 3]),
            method_name: "m".into(),
            arg: vec![],
            nonce: None,
            sender_info: None,
        }
    }

    fn signed(signer: &Signer, content: EnvelopeContent) -> (Envelope<'static>, RequestId) {
        let id = content.to_request_id();
        let sig = signer.0.sign_message(&[REQUEST_DOMAIN, id.as_slice()].concat());
        let envelope = Envelope {
            content: std::borrow::Cow::Owned(content),
            sender_pubkey: Some(signer.der()),
            sender_sig: Some(sig.to_vec()),
            sender_delegation: None,
        };
        (envelope, id)
    }

    fn message(result: Result<Targets, HttpError>) -> String {
        let e = result.expect_err("rejected");
        assert_eq!(e.status, 400);
        e.message
    }

    #[test]
    fn a_signed_request_in_time_passes_and_expiry_is_checked_both_ways() {
        let alice = Signer::new(1);
        let (envelope, id) = signed(&alice, query(alice.principal(), NOW + 60_000_000_000));
        assert_eq!(authenticate(&envelope, &id, NOW).unwrap(), None);

        let (expired, id) = signed(&alice, query(alice.principal(), NOW - 1));
        assert!(message(authenticate(&expired, &id, NOW))
            .starts_with("Invalid request expiry: Specified ingress_expiry not within expected range"));
        let too_far = NOW + MAX_EXPIRY_AHEAD.as_nanos() as u64 + 1;
        let (future, id) = signed(&alice, query(alice.principal(), too_far));
        assert!(message(authenticate(&future, &id, NOW)).contains("Maximum allowed expiry"));
    }

    #[test]
    fn signatures_keys_and_the_anonymous_sender_are_checked() {
        let (alice, bob) = (Signer::new(1), Signer::new(2));
        let expiry = NOW + 1;
        let (mut tampered, id) = signed(&alice, query(alice.principal(), expiry));
        tampered.sender_sig.as_mut().unwrap()[0] ^= 1;
        assert!(message(authenticate(&tampered, &id, NOW)).starts_with("Invalid signature: Invalid basic signature"));

        let (mut foreign_key, id) = signed(&alice, query(alice.principal(), expiry));
        foreign_key.sender_pubkey = Some(bob.der());
        assert!(message(authenticate(&foreign_key, &id, NOW)).contains("does not match the public key"));

        let (mut unsigned, id) = signed(&alice, query(alice.principal(), expiry));
        unsigned.sender_sig = None;
        assert!(message(authenticate(&unsigned, &id, NOW)).starts_with("Missing signature from user"));

        let (signed_anonymous, id) = signed(&alice, query(Principal::anonymous(), expiry));
        assert_eq!(
            message(authenticate(&signed_anonymous, &id, NOW)),
            "Signature is not allowed for the anonymous user"
        );
        let anonymous = Envelope {
            content: std::borrow::Cow::Owned(query(Principal::anonymous(), expiry)),
            sender_pubkey: None,
            sender_sig: None,
            sender_delegation: None,
        };
        assert_eq!(
            authenticate(&anonymous, &anonymous.content.to_request_id(), NOW).unwrap(),
            None
        );
    }

    #[test]
    fn delegations_are_verified_and_restrict_the_targets() {
        let (alice, session) = (Signer::new(1), Signer::new(3));
        let canister = Principal::from_slice(&[1, 2, 3]);
        let delegate = |expiration: u64, targets: Option<Vec<Principal>>| {
            let delegation = Delegation {
                pubkey: session.der(),
                expiration,
                targets,
                permissions: None,
            };
            let signature = alice.0.sign_message(&delegation.signable()).to_vec();
            SignedDelegation { delegation, signature }
        };
        let with = |delegation: SignedDelegation| {
            let content = query(alice.principal(), NOW + 1);
            let id = content.to_request_id();
            let sig = session
                .0
                .sign_message(&[REQUEST_DOMAIN, id.as_slice()].concat())
                .to_vec();
            let envelope = Envelope {
                content: std::borrow::Cow::Owned(content),
                sender_pubkey: Some(alice.der()),
                sender_sig: Some(sig),
                sender_delegation: Some(vec![delegation]),
            };
            (envelope, id)
        };
        let (envelope, id) = with(delegate(NOW + 10, Some(vec![canister])));
        let targets = authenticate(&envelope, &id, NOW).unwrap();
        assert_eq!(targets, Some([canister].into()));
        assert!(check_target(&targets, &envelope.content).is_ok());
        let elsewhere = Some([Principal::anonymous()].into());
        assert!(check_target(&elsewhere, &envelope.content).is_err());

        let (expired, id) = with(delegate(NOW - 1, None));
        assert!(message(authenticate(&expired, &id, NOW)).starts_with("Invalid delegation expiry"));
        let mut forged = delegate(NOW + 10, None);
        forged.signature[0] ^= 1;
        let (forged, id) = with(forged);
        assert!(message(authenticate(&forged, &id, NOW)).starts_with("Invalid delegation"));
    }

    #[test]
    fn ecdsa_keys_of_both_curves_are_verified() {
        use k256::pkcs8::EncodePublicKey;
        use p256::ecdsa::signature::Signer as _;
        let message = b"\x0Aic-request some request id";
        let k = k256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
        let sig: k256::ecdsa::Signature = k.sign(message);
        let der = k.verifying_key().to_public_key_der().unwrap();
        assert!(verify(der.as_bytes(), message, &sig.to_bytes()).is_ok());
        assert!(verify(der.as_bytes(), b"another", &sig.to_bytes()).is_err());

        let p = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
        let sig: p256::ecdsa::Signature = p.sign(message);
        let der = p.verifying_key().to_public_key_der().unwrap();
        assert!(verify(der.as_bytes(), message, &sig.to_bytes()).is_ok());
        assert!(verify(der.as_bytes(), b"another", &sig.to_bytes()).is_err());
        assert!(verify(b"not a key", message, &sig.to_bytes())
            .unwrap_err()
            .starts_with("Invalid public key"));
    }

    #[test]
    fn times_print_as_the_ic_prints_them() {
        assert_eq!(
            format_time(1_767_225_600_000_000_001),
            "2026-01-01 00:00:00.000000001 UTC"
        );
    }
}
