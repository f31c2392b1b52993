//! The parent's state: stable structures (see `memory.rs`) plus the embedded release.
//!
//! Reached only through `read_state`/`mutate_state`. Never hold either across an `.await`: read what a call needs,
//! await, then commit in a fresh `mutate_state`.

use crate::gates::{EVENTS_PER_CHILD, HISTORY_KEPT};
use crate::memory::{self, Memory};
use crate::model::{
    ChildEntry, ChildEvent, IndexProgress, LockMark, Meta, Phase, PhaseKind, ReleaseEntry, Rollout, RolloutRecord,
    Settings, StoredChild,
};
use crate::release::Release;
use candid::Principal;
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};
use shared::release::ReleaseInfo;
use std::borrow::Cow;
use std::cell::RefCell;

/// Modules are stored in chunks of this size (the IC's chunk-store chunk size, so a stored release can be uploaded
/// as is).
pub const MODULE_CHUNK_BYTES: usize = 1024 * 1024;

pub struct State {
    /// The release this build carries (its bytes come with the code). The fleet's target is another matter:
    /// see `target`.
    pub release: Release,
    settings: StableCell<Settings, Memory>,
    meta: StableCell<Meta, Memory>,
    rollout: StableCell<Rollout, Memory>,
    children: StableBTreeMap<Principal, StoredChild, Memory>,
    releases: StableBTreeMap<[u8; 32], ReleaseEntry, Memory>,
    pending: StableBTreeMap<Principal, (), Memory>,
    in_flight: StableBTreeMap<Principal, LockMark, Memory>,
    failed: StableBTreeMap<Principal, (), Memory>,
    modules: StableBTreeMap<([u8; 32], u32), Vec<u8>, Memory>,
    running: StableBTreeMap<[u8; 32], u64, Memory>,
    history: StableBTreeMap<u64, RolloutRecord, Memory>,
    events: StableBTreeMap<(Principal, u64), ChildEvent, Memory>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::init(DefaultMemoryImpl::default(), Release::embedded()));
}

pub fn read_state<R>(f: impl FnOnce(&State) -> R) -> R {
    STATE.with(|s| f(&s.borrow()))
}

pub fn mutate_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

impl State {
    /// Opens (or creates) every structure. O(1): reads headers only, whatever the fleet size.
    pub fn init(memory: DefaultMemoryImpl, release: Release) -> Self {
        let mm = memory::manager(memory);
        Self {
            release,
            settings: StableCell::init(mm.get(memory::SETTINGS), Settings::default()),
            meta: StableCell::init(mm.get(memory::META), Meta::default()),
            rollout: StableCell::init(mm.get(memory::ROLLOUT), Rollout::default()),
            children: StableBTreeMap::init(mm.get(memory::CHILDREN)),
            releases: StableBTreeMap::init(mm.get(memory::RELEASES)),
            pending: StableBTreeMap::init(mm.get(memory::PENDING)),
            in_flight: StableBTreeMap::init(mm.get(memory::IN_FLIGHT)),
            failed: StableBTreeMap::init(mm.get(memory::FAILED)),
            modules: StableBTreeMap::init(mm.get(memory::MODULES)),
            running: StableBTreeMap::init(mm.get(memory::RUNNING)),
            history: StableBTreeMap::init(mm.get(memory::HISTORY)),
            events: StableBTreeMap::init(mm.get(memory::EVENTS)),
        }
    }

    // --- cells -------------------------------------------------------------------------------------------------

    pub fn settings(&self) -> &Settings {
        self.settings.get()
    }

    pub fn update_settings(&mut self, f: impl FnOnce(&mut Settings)) {
        let mut s = self.settings.get().clone();
        f(&mut s);
        self.settings.set(s);
    }

    pub fn meta(&self) -> &Meta {
        self.meta.get()
    }

    pub fn update_meta(&mut self, f: impl FnOnce(&mut Meta)) {
        let mut m = self.meta.get().clone();
        f(&mut m);
        self.meta.set(m);
    }

    /// Hands out a fresh operation id (lock token).
    pub fn next_op_id(&mut self) -> u64 {
        let mut id = 0;
        self.update_meta(|m| {
            m.next_op_id += 1;
            id = m.next_op_id;
        });
        id
    }

    pub fn rollout(&self) -> &Rollout {
        self.rollout.get()
    }

    pub fn update_rollout(&mut self, f: impl FnOnce(&mut Rollout)) {
        let mut r = self.rollout.get().clone();
        f(&mut r);
        self.rollout.set(r);
    }

    // --- registry ----------------------------------------------------------------------------------------------

    pub fn child(&self, id: &Principal) -> Option<ChildEntry> {
        self.children.get(id).map(|stored| stored.decode())
    }

    pub fn children(&self) -> &StableBTreeMap<Principal, StoredChild, Memory> {
        &self.children
    }

    pub fn child_count(&self) -> u64 {
        self.children.len()
    }

    /// Writes a child entry and keeps the phase indexes (PENDING, IN_FLIGHT, FAILED) in step with its phase.
    pub fn put_child(&mut self, id: Principal, entry: ChildEntry) {
        // The old entry's head is enough: its hash for RUNNING, its phase for the indexes.
        let old = self.children.insert(id, StoredChild::new(&entry)).map(|o| o.head());
        let old_hash = old.as_ref().and_then(|o| o.installed_hash.as_deref());
        if old_hash != entry.installed_hash.as_deref() && self.is_counted(&id) {
            self.count_running(old_hash, -1);
            self.count_running(entry.installed_hash.as_deref(), 1);
        }
        if let Some(old) = old {
            self.unindex(&id, old.phase);
        }
        match &entry.phase {
            Phase::Idle => {}
            Phase::Pending => {
                self.pending.insert(id, ());
            }
            Phase::InFlight(op) => {
                self.in_flight.insert(id, LockMark::of(op));
            }
            Phase::Failed => {
                self.failed.insert(id, ());
            }
        }
    }

    pub fn remove_child(&mut self, id: &Principal) -> Option<ChildEntry> {
        let old = self.children.remove(id)?.decode();
        if self.is_counted(id) {
            self.count_running(old.installed_hash.as_deref(), -1);
        }
        self.unindex(id, old.phase.kind());
        Some(old)
    }

    fn unindex(&mut self, id: &Principal, phase: PhaseKind) {
        match phase {
            PhaseKind::Idle => {}
            PhaseKind::Pending => {
                self.pending.remove(id);
            }
            PhaseKind::InFlight => {
                self.in_flight.remove(id);
            }
            PhaseKind::Failed => {
                self.failed.remove(id);
            }
        }
    }

    pub fn pending(&self) -> &StableBTreeMap<Principal, (), Memory> {
        &self.pending
    }

    pub fn in_flight(&self) -> &StableBTreeMap<Principal, LockMark, Memory> {
        &self.in_flight
    }

    /// Test helper: locks that take a concurrency slot (a scan of IN_FLIGHT).
    #[cfg(test)]
    pub fn slot_count(&self) -> u64 {
        self.in_flight.iter().filter(|e| e.value().takes_slot()).count() as u64
    }

    pub fn failed(&self) -> &StableBTreeMap<Principal, (), Memory> {
        &self.failed
    }

    // --- releases ----------------------------------------------------------------------------------------------

    /// The release the fleet is being moved to: the rollout's, or the embedded one before any rollout.
    pub fn target(&self) -> [u8; 32] {
        <[u8; 32]>::try_from(self.rollout().release.as_slice()).unwrap_or(self.release.hash)
    }

    pub fn target_is(&self, hash: Option<&[u8]>) -> bool {
        hash == Some(&self.target()[..])
    }

    pub fn release_info(&self, hash: &[u8; 32]) -> Option<ReleaseInfo> {
        if *hash == self.release.hash {
            return Some(self.release.info());
        }
        let entry = self.releases.get(hash)?;
        Some(ReleaseInfo {
            hash: hash.to_vec(),
            size: entry.size,
            version: entry.version,
        })
    }

    /// Records the embedded release, with its module in the store, unless both are there already (stored bytes are
    /// never written twice). Returns whether the release is new to this parent. O(size of the module).
    pub fn record_release(&mut self, now: u64) -> bool {
        let hash = self.release.hash;
        let known = self.releases.get(&hash);
        if known.as_ref().is_some_and(|e| e.stored) {
            return false;
        }
        for (i, chunk) in self.release.bytes.chunks(MODULE_CHUNK_BYTES).enumerate() {
            self.modules.insert((hash, i as u32), chunk.to_vec());
        }
        let entry = ReleaseEntry {
            size: self.release.size,
            version: self.release.version.clone(),
            first_seen: known.as_ref().map_or(now, |e| e.first_seen),
            stored: true,
        };
        self.releases.insert(hash, entry);
        known.is_none()
    }

    /// The module of a release: the embedded one as compiled in, a stored one read from the store.
    pub fn module(&self, hash: &[u8; 32]) -> Option<Cow<'static, [u8]>> {
        if *hash == self.release.hash {
            return Some(Cow::Borrowed(self.release.bytes));
        }
        if !self.releases.get(hash)?.stored {
            return None;
        }
        let mut bytes = Vec::new();
        for chunk in self.modules.range((*hash, 0)..=(*hash, u32::MAX)) {
            bytes.extend_from_slice(&chunk.value());
        }
        Some(Cow::Owned(bytes))
    }

    /// Chunk `index` of a release's module, in the IC's 1 MiB chunks (the store's chunks are the same size).
    pub fn module_chunk(&self, hash: &[u8; 32], index: u32) -> Option<Cow<'static, [u8]>> {
        if *hash == self.release.hash {
            return self
                .release
                .bytes
                .chunks(MODULE_CHUNK_BYTES)
                .nth(index as usize)
                .map(Cow::Borrowed);
        }
        self.modules.get(&(*hash, index)).map(Cow::Owned)
    }

    /// Drops the modules of releases older than the `keep_releases` most recent ones, unless a child runs them or
    /// they are the target or the embedded release. Waits until the children per release are all counted. Keeps
    /// every `RELEASES` entry. O(releases + chunks dropped).
    pub fn prune_releases(&mut self) {
        if self.meta().running_index != IndexProgress::Done {
            return;
        }
        let mut stored: Vec<([u8; 32], u64)> = self
            .releases
            .iter()
            .map(|e| e.into_pair())
            .filter(|(_, r)| r.stored)
            .map(|(h, r)| (h, r.first_seen))
            .collect();
        stored.sort_by_key(|(_, first_seen)| std::cmp::Reverse(*first_seen));
        let keep = self.settings().keep_releases as usize;
        let (target, embedded) = (self.target(), self.release.hash);
        for (hash, _) in stored.into_iter().skip(keep) {
            if hash == target || hash == embedded || self.running_on(&hash).unwrap_or(1) > 0 {
                continue;
            }
            let chunks: Vec<_> = self
                .modules
                .range((hash, 0)..=(hash, u32::MAX))
                .map(|e| *e.key())
                .collect();
            for key in chunks {
                self.modules.remove(&key);
            }
            let mut entry = self.releases.get(&hash).expect("listed above");
            entry.stored = false;
            self.releases.insert(hash, entry);
        }
    }

    pub fn releases(&self) -> &StableBTreeMap<[u8; 32], ReleaseEntry, Memory> {
        &self.releases
    }

    /// A child module this parent has carried (any parent release since the first install).
    pub fn is_shipped(&self, hash: &[u8]) -> bool {
        self.release.is(Some(hash)) || <[u8; 32]>::try_from(hash).is_ok_and(|h| self.releases.contains_key(&h))
    }

    // --- history (HISTORY, EVENTS) -----------------------------------------------------------------------------

    /// Records a rollout that ended (or was replaced); keeps the last `HISTORY_KEPT`. O(log n).
    pub fn record_rollout(&mut self, id: u64, record: RolloutRecord) {
        self.history.insert(id, record);
        if self.history.len() > HISTORY_KEPT {
            let oldest = self.history.first_key_value().map(|(k, _)| k).expect("not empty");
            self.history.remove(&oldest);
        }
    }

    pub fn history(&self) -> &StableBTreeMap<u64, RolloutRecord, Memory> {
        &self.history
    }

    /// Records an operation that ended on `child` under lock `op_id`; keeps the child's last `EVENTS_PER_CHILD`.
    pub fn record_event(&mut self, child: Principal, op_id: u64, event: ChildEvent) {
        self.events.insert((child, op_id), event);
        let keys: Vec<(Principal, u64)> = self
            .events
            .range((child, 0)..=(child, u64::MAX))
            .map(|e| *e.key())
            .collect();
        for key in keys.iter().take(keys.len().saturating_sub(EVENTS_PER_CHILD)) {
            self.events.remove(key);
        }
    }

    /// The child's last operations, oldest first.
    pub fn events_of(&self, child: Principal) -> Vec<(u64, ChildEvent)> {
        self.events
            .range((child, 0)..=(child, u64::MAX))
            .map(|e| (e.key().1, e.value()))
            .collect()
    }

    // --- children per module (RUNNING) -------------------------------------------------------------------------

    /// Children the registry has on `hash`; `None` until the index is built.
    pub fn running_on(&self, hash: &[u8; 32]) -> Option<u64> {
        (self.meta().running_index == IndexProgress::Done).then(|| self.running.get(hash).unwrap_or(0))
    }

    fn is_counted(&self, id: &Principal) -> bool {
        match &self.meta().running_index {
            IndexProgress::Done => true,
            IndexProgress::After(Some(last)) => id <= last,
            IndexProgress::After(None) | IndexProgress::NotStarted => false,
        }
    }

    fn count_running(&mut self, hash: Option<&[u8]>, delta: i64) {
        let Some(hash) = hash.and_then(|h| <[u8; 32]>::try_from(h).ok()) else {
            return;
        };
        let n = self.running.get(&hash).unwrap_or(0).saturating_add_signed(delta);
        if n == 0 {
            self.running.remove(&hash);
        } else {
            self.running.insert(hash, n);
        }
    }

    /// Forgets the children per module; the tick counts the registry again, in batches. O(1).
    pub fn recount_running(&mut self) {
        self.running.clear_new();
        self.update_meta(|m| m.running_index = IndexProgress::NotStarted);
    }

    /// Counts up to `batch` more registry entries into `RUNNING`; returns whether the index is complete.
    pub fn build_running_index(&mut self, batch: usize) -> bool {
        let after = match self.meta().running_index.clone() {
            IndexProgress::Done => return true,
            IndexProgress::NotStarted => None,
            IndexProgress::After(after) => after,
        };
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let entries: Vec<(Principal, Option<Vec<u8>>)> = self
            .children
            .range((lower, std::ops::Bound::Unbounded))
            .take(batch)
            .map(|e| {
                let (id, stored) = e.into_pair();
                (id, stored.head().installed_hash)
            })
            .collect();
        let done = entries.len() < batch;
        let last = entries.last().map(|(id, _)| *id).or(after);
        for (_, hash) in &entries {
            self.count_running(hash.as_deref(), 1);
        }
        self.update_meta(|m| {
            m.running_index = if done {
                IndexProgress::Done
            } else {
                IndexProgress::After(last)
            }
        });
        done
    }

    /// Test helper: writes an entry as a parent that does not keep the indexes would (an older module).
    #[cfg(test)]
    pub fn put_child_behind_the_indexes(&mut self, id: Principal, entry: ChildEntry) {
        self.children.insert(id, StoredChild::new(&entry));
    }

    /// Test helper: records `hash` as a release this parent has shipped.
    #[cfg(test)]
    pub fn ship(&mut self, hash: [u8; 32]) {
        let entry = ReleaseEntry {
            size: 1,
            version: "shipped".into(),
            first_seen: 0,
            stored: false,
        };
        self.releases.insert(hash, entry);
    }

    /// Test helper: checks that every index agrees with the registry (a full scan).
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let (mut p, mut f, mut i) = (0, 0, 0);
        for e in self.children.iter() {
            let (id, stored) = e.into_pair();
            let entry = stored.decode();
            assert_eq!(stored.head().phase, entry.phase.kind());
            match &entry.phase {
                Phase::Idle => {
                    assert!(!self.pending.contains_key(&id) && !self.failed.contains_key(&id));
                    assert!(!self.in_flight.contains_key(&id));
                    // Restores and dropped queues leave children off the target on purpose.
                    let r = self.rollout();
                    if r.plan.is_none() && !r.restore && r.aborted_at.is_none() {
                        assert!(
                            self.target_is(entry.installed_hash.as_deref()),
                            "idle child {id} not on the target"
                        );
                    }
                }
                Phase::Pending => {
                    assert!(self.pending.contains_key(&id));
                    p += 1;
                }
                Phase::InFlight(op) => {
                    assert_eq!(self.in_flight.get(&id), Some(LockMark::of(op)));
                    i += 1;
                }
                Phase::Failed => {
                    assert!(self.failed.contains_key(&id));
                    f += 1;
                }
            }
        }
        assert_eq!((p, i, f), (self.pending.len(), self.in_flight.len(), self.failed.len()));
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub mod test_support {
    use super::*;

    pub const OLD: [u8; 32] = [0xAA; 32];

    /// A module of 2.5 store chunks, so that storing and reading it back crosses chunk boundaries.
    pub static MODULE: [u8; MODULE_CHUNK_BYTES * 5 / 2] = [0x5A; MODULE_CHUNK_BYTES * 5 / 2];
    pub static NEXT_MODULE: [u8; 1_000] = [0x22; 1_000];

    /// The release a fresh test state embeds. Its hash is the SHA-256 of its module, as on the IC (`FakeIc` gives an
    /// installed child that hash).
    pub fn release() -> Release {
        release_of(&MODULE, "2.0.0")
    }

    /// The release a later parent build embeds.
    pub fn next_release() -> Release {
        release_of(&NEXT_MODULE, "3.0.0")
    }

    pub fn release_of(bytes: &'static [u8], version: &str) -> Release {
        use sha2::{Digest, Sha256};
        Release {
            hash: Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
            version: version.into(),
            bytes,
        }
    }

    /// A fresh state over heap memory (`DefaultMemoryImpl` is a `VectorMemory` off-wasm). Its modules are installed
    /// inline; the chunk store's tests lower `chunked_install_above`.
    pub fn fresh_state() -> State {
        let mut s = State::init(DefaultMemoryImpl::default(), release());
        s.update_settings(|st| st.chunked_install_above = MODULE.len() as u64);
        s
    }

    /// Replaces this thread's global state (each test runs on its own thread) and returns the release hash.
    pub fn install_global(state: State) -> [u8; 32] {
        let hash = state.release.hash;
        STATE.with(|s| *s.borrow_mut() = state);
        hash
    }

    pub fn principal(n: u64) -> Principal {
        let mut bytes = n.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 1]);
        Principal::from_slice(&bytes)
    }
}
