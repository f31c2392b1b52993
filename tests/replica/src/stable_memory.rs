//! Stable memory: sized in 64 KiB Wasm pages, stored sparsely in 4 KiB chunks, with a journal for rolling back a
//! message.

use std::collections::{BTreeMap, BTreeSet};

/// A stable memory page (the unit of `stable64_size` and `stable64_grow`).
pub const PAGE_SIZE: u64 = 65536;
/// 500 GiB (facts §4, `MAX_STABLE_MEMORY_IN_BYTES`).
pub const MAX_PAGES: u64 = 500 * 1024 * 1024 * 1024 / PAGE_SIZE;
/// What is stored: the 4 KiB chunks written at least once (a stable structure's header costs 4 KiB, not 64).
const CHUNK: u64 = 4096;

type Chunk = Box<[u8; CHUNK as usize]>;

/// Chunks never written read as zeros and take no space.
#[derive(Default, Clone)]
pub struct StableMemory {
    chunks: BTreeMap<u64, Chunk>,
    size: u64,
    journal: Option<Journal>,
}

#[derive(Default, Clone)]
struct Journal {
    size: u64,
    /// Contents of each chunk before its first write in this transaction (`None`: it was absent).
    old_chunks: BTreeMap<u64, Option<Chunk>>,
}

fn zero_chunk() -> Chunk {
    Box::new([0; CHUNK as usize])
}

impl StableMemory {
    /// Size in pages.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of pages that hold data (the rest are implicit zeros).
    pub fn resident_pages(&self) -> usize {
        let chunks_per_page = PAGE_SIZE / CHUNK;
        self.chunks
            .keys()
            .map(|c| c / chunks_per_page)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// A memory holding `bytes`, grown to whole pages; all-zero pages stay implicit.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut m = Self {
            size: (bytes.len() as u64).div_ceil(PAGE_SIZE),
            ..Self::default()
        };
        for (i, chunk) in bytes.chunks(CHUNK as usize).enumerate() {
            if chunk.iter().any(|b| *b != 0) {
                m.write(i as u64 * CHUNK, chunk).expect("within the size");
            }
        }
        m
    }

    /// The whole memory, `size() * PAGE_SIZE` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; (self.size * PAGE_SIZE) as usize];
        self.read(0, &mut out).expect("within the size");
        out
    }

    /// `stable64_grow`: the old size in pages, or -1 if the new size would exceed the limit.
    pub fn grow(&mut self, additional: u64) -> i64 {
        match self.size.checked_add(additional) {
            Some(new) if new <= MAX_PAGES => {
                let old = self.size;
                self.size = new;
                old as i64
            }
            _ => -1,
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), String> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size * PAGE_SIZE => Ok(()),
            _ => Err(format!(
                "stable memory out of bounds: offset {offset} + size {len} exceeds {} bytes",
                self.size * PAGE_SIZE
            )),
        }
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.check_range(offset, buf.len() as u64)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let addr = offset + pos as u64;
            let (chunk, within) = (addr / CHUNK, (addr % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - pos);
            match self.chunks.get(&chunk) {
                Some(c) => buf[pos..pos + n].copy_from_slice(&c[within..within + n]),
                None => buf[pos..pos + n].fill(0),
            }
            pos += n;
        }
        Ok(())
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.check_range(offset, data.len() as u64)?;
        let mut pos = 0usize;
        while pos < data.len() {
            let addr = offset + pos as u64;
            let (chunk, within) = (addr / CHUNK, (addr % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(data.len() - pos);
            if let Some(journal) = &mut self.journal {
                journal
                    .old_chunks
                    .entry(chunk)
                    .or_insert_with(|| self.chunks.get(&chunk).cloned());
            }
            let c = self.chunks.entry(chunk).or_insert_with(zero_chunk);
            c[within..within + n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
        }
        Ok(())
    }

    /// Starts journaling writes so that [`Self::rollback`] can undo them. Nested calls are not supported.
    pub fn begin(&mut self) {
        debug_assert!(self.journal.is_none(), "stable memory transaction already open");
        self.journal = Some(Journal {
            size: self.size,
            old_chunks: BTreeMap::new(),
        });
    }

    pub fn commit(&mut self) {
        self.journal = None;
    }

    pub fn rollback(&mut self) {
        if let Some(journal) = self.journal.take() {
            self.size = journal.size;
            for (chunk, old) in journal.old_chunks {
                match old {
                    Some(c) => {
                        self.chunks.insert(chunk, c);
                    }
                    None => {
                        self.chunks.remove(&chunk);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_reads_zero_and_rollback_restores() {
        let mut m = StableMemory::default();
        assert_eq!(m.grow(1000), 0);
        let mut buf = [1u8; 8];
        m.read(999 * PAGE_SIZE, &mut buf).unwrap();
        assert_eq!(buf, [0; 8]);
        m.write(PAGE_SIZE - 2, &[7; 4]).unwrap();
        assert_eq!(m.resident_pages(), 2);
        m.begin();
        m.write(PAGE_SIZE - 2, &[9; 4]).unwrap();
        m.write(500 * PAGE_SIZE, &[9; 4]).unwrap();
        assert_eq!(m.grow(5), 1000);
        m.rollback();
        assert_eq!(m.size(), 1000);
        assert_eq!(m.resident_pages(), 2);
        m.read(PAGE_SIZE - 2, &mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], &[7; 4]);
        assert!(m.read(1000 * PAGE_SIZE - 1, &mut buf[..2]).is_err());
    }

    #[test]
    fn bytes_round_trip_in_whole_pages_and_zero_pages_stay_implicit() {
        let mut bytes = vec![0u8; 3 * PAGE_SIZE as usize + 5];
        bytes[1] = 9;
        bytes[3 * PAGE_SIZE as usize + 4] = 7;
        let m = StableMemory::from_bytes(&bytes);
        assert_eq!((m.size(), m.resident_pages()), (4, 2));
        let back = m.to_bytes();
        assert_eq!(back.len(), 4 * PAGE_SIZE as usize);
        assert_eq!(&back[..bytes.len()], &bytes[..]);
        assert!(back[bytes.len()..].iter().all(|b| *b == 0));
    }
}
