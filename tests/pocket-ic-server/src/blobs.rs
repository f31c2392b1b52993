//! The blob store (`/blobstore`): content-addressed uploads, shared by all instances, that `set_stable_memory`
//! refers to by id. Blobs are kept for the life of the server, as PocketIC keeps them.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use pocket_ic::common::rest::{BinaryBlob, BlobCompression, BlobId};
use sha2::{Digest, Sha256};

#[derive(Clone, Default)]
pub struct Blobs(Arc<Mutex<HashMap<Vec<u8>, BinaryBlob>>>);

impl Blobs {
    /// Stores `data` (gzipped if `compression` says so) under the SHA-256 of the bytes as sent.
    pub fn store(&self, data: Vec<u8>, compression: BlobCompression) -> BlobId {
        let id = Sha256::digest(&data).to_vec();
        let blob = BinaryBlob { data, compression };
        self.0.lock().expect("blob store lock").insert(id.clone(), blob);
        BlobId(id)
    }

    pub fn fetch(&self, id: &BlobId) -> Option<BinaryBlob> {
        self.0.lock().expect("blob store lock").get(&id.0).cloned()
    }

    /// The blob's content, decompressed.
    pub fn content(&self, id: &BlobId) -> Result<Vec<u8>, String> {
        let blob = self
            .fetch(id)
            .ok_or_else(|| format!("no blob with id {}", hex::encode(&id.0)))?;
        match blob.compression {
            BlobCompression::NoCompression => Ok(blob.data),
            BlobCompression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&blob.data[..])
                    .read_to_end(&mut out)
                    .map_err(|e| format!("blob {} is not valid gzip: {e}", hex::encode(&id.0)))?;
                Ok(out)
            }
        }
    }
}
