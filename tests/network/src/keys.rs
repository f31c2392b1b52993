//! The network's two keys: the BLS12-381 root key that signs certificates, and the node's Ed25519 key that signs
//! query responses. Both are generated once per state folder and kept there.

use std::fs;
use std::io;
use std::path::Path;

use candid::Principal;
use ic_verify_bls_signature as bls;

/// DER prefix of an IC root key (BLS12-381 G2 public key, spec "Certificate"): the 96-byte key follows.
const ROOT_KEY_DER_PREFIX: [u8; 37] = [
    0x30, 0x81, 0x82, 0x30, 0x1d, 0x06, 0x0d, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03, 0x01, 0x02,
    0x01, 0x06, 0x0c, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03, 0x02, 0x01, 0x03, 0x61, 0x00,
];

/// Domain separator of the signed state root (spec "Certificate").
const STATE_ROOT_DOMAIN: &[u8] = b"\x0Dic-state-root";

const ROOT_KEY_FILE: &str = "root_key.secret";
const NODE_KEY_FILE: &str = "node_key.secret";

pub struct Keys {
    root: bls::PrivateKey,
    node: ic_ed25519::PrivateKey,
    // Derived once: a BLS public key takes a G2 multiplication (about a millisecond).
    root_key_der: Vec<u8>,
    node_key_der: Vec<u8>,
}

impl Keys {
    /// Fresh random keys (kept in memory only).
    pub fn generate() -> Self {
        Self::new(
            bls::PrivateKey::random(&mut rand::rngs::OsRng),
            ic_ed25519::PrivateKey::generate(),
        )
    }

    fn new(root: bls::PrivateKey, node: ic_ed25519::PrivateKey) -> Self {
        let root_key_der = [&ROOT_KEY_DER_PREFIX[..], &root.public_key().serialize()].concat();
        let node_key_der = node.public_key().serialize_rfc8410_der();
        Self {
            root,
            node,
            root_key_der,
            node_key_der,
        }
    }

    /// The keys kept in `dir`, generated and written there (readable by the owner only) on first use.
    pub fn load_or_create(dir: &Path) -> io::Result<Self> {
        let (root_file, node_file) = (dir.join(ROOT_KEY_FILE), dir.join(NODE_KEY_FILE));
        if root_file.exists() && node_file.exists() {
            let root = bls::PrivateKey::deserialize(&read_hex(&root_file)?)
                .map_err(|e| invalid(&root_file, format!("{e:?}")))?;
            let node = ic_ed25519::PrivateKey::deserialize_raw(&read_hex(&node_file)?)
                .map_err(|e| invalid(&node_file, e.to_string()))?;
            return Ok(Self::new(root, node));
        }
        let keys = Self::generate();
        fs::create_dir_all(dir)?;
        write_secret(&root_file, &hex::encode(keys.root.serialize()))?;
        write_secret(&node_file, &hex::encode(keys.node.serialize_raw()))?;
        Ok(keys)
    }

    /// The root key as clients pin it: 133 bytes of DER.
    pub fn root_key_der(&self) -> &[u8] {
        &self.root_key_der
    }

    /// Signs a state tree's root hash: the `signature` of a certificate.
    pub fn sign_state_root(&self, root_hash: &[u8; 32]) -> Vec<u8> {
        let message = [STATE_ROOT_DOMAIN, root_hash].concat();
        self.root.sign(&message).serialize().to_vec()
    }

    /// The node's public key as the state tree lists it (`subnet/<id>/node/<id>/public_key`): 44 bytes of DER.
    pub fn node_key_der(&self) -> &[u8] {
        &self.node_key_der
    }

    /// The node id: the self-authenticating principal of its key.
    pub fn node_id(&self) -> Principal {
        Principal::self_authenticating(&self.node_key_der)
    }

    pub fn sign_as_node(&self, message: &[u8]) -> Vec<u8> {
        self.node.sign_message(message).to_vec()
    }
}

fn read_hex(path: &Path) -> io::Result<Vec<u8>> {
    hex::decode(fs::read_to_string(path)?.trim()).map_err(|e| invalid(path, e.to_string()))
}

fn invalid(path: &Path, reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {reason}", path.display()))
}

fn write_secret(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_per_folder_and_sign_verifiably() {
        let dir = std::env::temp_dir().join(format!("network-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = Keys::load_or_create(&dir).unwrap();
        let again = Keys::load_or_create(&dir).unwrap();
        assert_eq!(first.root_key_der(), again.root_key_der());
        assert_eq!(first.node_key_der(), again.node_key_der());
        assert_eq!(first.root_key_der().len(), 133);
        assert_eq!(first.node_key_der().len(), 44);
        assert_ne!(
            Keys::load_or_create(&dir.join("other")).unwrap().root_key_der(),
            first.root_key_der()
        );

        let root_hash = [7; 32];
        let signature = first.sign_state_root(&root_hash);
        let message = [STATE_ROOT_DOMAIN, &root_hash].concat();
        let key = &first.root_key_der()[ROOT_KEY_DER_PREFIX.len()..];
        assert!(bls::verify_bls_signature(&signature, &message, key).is_ok());
        assert!(bls::verify_bls_signature(&signature, b"another message", key).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
