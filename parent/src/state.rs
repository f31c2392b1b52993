//! The parent's state: stable structures (see `memory.rs`) plus the embedded release.
//!
//! Reached only through `read_state`/`mutate_state`. Never hold either across an `.await`: read what a call needs,
//! await, then commit in a fresh `mutate_state`.

use crate::memory::{self, Memory};
use crate::model::{ChildEntry, LockMark, Meta, Phase, ReleaseEntry, Rollout, Settings};
use crate::release::Release;
use candid::Principal;
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};
use std::cell::RefCell;

pub struct State {
    /// The release this build carries (not stored: it comes with the code).
    pub release: Release,
    settings: StableCell<Settings, Memory>,
    meta: StableCell<Meta, Memory>,
    rollout: StableCell<Rollout, Memory>,
    children: StableBTreeMap<Principal, ChildEntry, Memory>,
    releases: StableBTreeMap<[u8; 32], ReleaseEntry, Memory>,
    pending: StableBTreeMap<Principal, (), Memory>,
    in_flight: StableBTreeMap<Principal, LockMark, Memory>,
    failed: StableBTreeMap<Principal, (), Memory>,
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
        self.children.get(id)
    }

    pub fn children(&self) -> &StableBTreeMap<Principal, ChildEntry, Memory> {
        &self.children
    }

    pub fn child_count(&self) -> u64 {
        self.children.len()
    }

    /// Writes a child entry and keeps the phase indexes (PENDING, IN_FLIGHT, FAILED) in step with its phase.
    pub fn put_child(&mut self, id: Principal, entry: ChildEntry) {
        let old = self.children.insert(id, entry.clone());
        if let Some(old) = old {
            self.unindex(&id, &old.phase);
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
        let old = self.children.remove(id)?;
        self.unindex(id, &old.phase);
        Some(old)
    }

    fn unindex(&mut self, id: &Principal, phase: &Phase) {
        match phase {
            Phase::Idle => {}
            Phase::Pending => {
                self.pending.remove(id);
            }
            Phase::InFlight(_) => {
                self.in_flight.remove(id);
            }
            Phase::Failed => {
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

    /// Records the embedded release if it is new; keeps the first-seen time otherwise. O(log n).
    pub fn record_release(&mut self, now: u64) {
        let hash = self.release.hash;
        if !self.releases.contains_key(&hash) {
            let entry = ReleaseEntry {
                size: self.release.size,
                version: self.release.version.clone(),
                first_seen: now,
            };
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

    /// Test helper: records `hash` as a release this parent has shipped.
    #[cfg(test)]
    pub fn ship(&mut self, hash: [u8; 32]) {
        let entry = ReleaseEntry {
            size: 1,
            version: "shipped".into(),
            first_seen: 0,
        };
        self.releases.insert(hash, entry);
    }

    /// Test helper: checks that every index agrees with the registry (a full scan).
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let (mut p, mut f, mut i) = (0, 0, 0);
        for e in self.children.iter() {
            let (id, entry) = e.into_pair();
            match &entry.phase {
                Phase::Idle => {
                    assert!(!self.pending.contains_key(&id) && !self.failed.contains_key(&id));
                    assert!(!self.in_flight.contains_key(&id));
                    if self.rollout().plan.is_none() {
                        assert!(
                            self.release.is(entry.installed_hash.as_deref()),
                            "idle child {id} not on the release"
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
pub mod test_support {
    use super::*;

    pub const OLD: [u8; 32] = [0xAA; 32];

    pub fn release() -> Release {
        Release {
            hash: [0x11; 32],
            size: 1234,
            version: "2.0.0".into(),
        }
    }

    /// A fresh state over heap memory (`DefaultMemoryImpl` is a `VectorMemory` off-wasm).
    pub fn fresh_state() -> State {
        State::init(DefaultMemoryImpl::default(), release())
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
