//! Drives the rollout: performs the steps `rollout.rs` hands out, through `Ic`, and commits their results.
//!
//! The tick is a one-shot timer (re-armed while work remains, OpenChat "PerRoundTimer" style; nothing runs when the
//! rollout is idle). It launches up to K operations, each a worker future. When a worker's child reaches its
//! read-only confirm, the confirm continues as a task of its own and the worker takes the next queued child at once
//! (in the same callback), so the pipeline stays full without waiting for a batch or a tick. While the rollout has
//! work, a repeating watchdog tick (every `LOCK_CHECK_INTERVAL`) backs the one-shot tick up, because a one-shot tick
//! whose execution traps is gone for good (see `ic.rs`).
//!
//! Every await follows prepare → await → commit: the lock and step are in stable memory before a call goes out, no
//! state borrow is held across the await, and the result is committed with a fresh `mutate_state` that first checks
//! the lock is still ours.

use crate::ic::{CdkIc, Ic, InstallMode};
use crate::model::Step;
use crate::outcome::{hex, CallError};
use crate::rollout::{self, Launch, Outcome, StoreTask};
use crate::state::{mutate_state, read_state};
use candid::Principal;
use sha2::{Digest, Sha256};
use shared::child::{ChildInitArg, ChildUpgradeArg};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// The upgrade argument: `opt ChildUpgradeArg` with no changes.
pub fn upgrade_arg() -> Vec<u8> {
    candid::encode_one(Some(ChildUpgradeArg::default())).expect("encode ChildUpgradeArg")
}

/// The install argument of a new child.
pub fn init_arg(parent: Principal) -> Vec<u8> {
    candid::encode_one(ChildInitArg { parent }).expect("encode ChildInitArg")
}

/// Performs one step. Reads no state: everything it needs is in `launch`.
async fn perform<I: Ic>(ic: &I, launch: &Launch) -> Outcome {
    let child = launch.child;
    match launch.step {
        Step::Stop => Outcome::Unit(ic.stop(child).await),
        Step::Install | Step::InstallNew => {
            let (mode, arg) = match launch.step {
                Step::Install => (
                    InstallMode::Upgrade {
                        skip_pre_upgrade: launch.upgrade.skip_pre_upgrade,
                    },
                    upgrade_arg(),
                ),
                _ => (InstallMode::Install, init_arg(ic.self_id())),
            };
            // From the chunk store when it holds the whole release, else inline. The module (or its chunk hashes) is
            // read in the message that sends it (nothing is kept across the await).
            let release = launch.release;
            if let Some(chunks) = read_state(|s| rollout::stored_chunks(s, &release)) {
                return Outcome::Unit(ic.install_chunked(child, mode, chunks, release.to_vec(), arg).await);
            }
            match read_state(|s| s.module(&release)) {
                Some(wasm) => Outcome::Unit(ic.install(child, mode, wasm, arg).await),
                None => Outcome::Unit(Err(CallError::new(
                    "install_code",
                    0,
                    format!("the module of release {} is no longer stored", hex(&release)),
                ))),
            }
        }
        Step::Start => Outcome::Unit(ic.start(child).await),
        Step::Health => {
            let method = read_state(|s| s.settings().gates.health_method.clone());
            Outcome::Unit(ic.health(child, method).await)
        }
        Step::TakeSnapshot => Outcome::Snapshot(ic.take_snapshot(child, launch.snapshot.clone()).await),
        Step::LoadSnapshot => {
            let id = launch.snapshot.clone().expect("a restore carries its snapshot");
            Outcome::Unit(ic.load_snapshot(child, id).await)
        }
        Step::Check | Step::Confirm | Step::Recheck => Outcome::Status(ic.status(child).await),
        Step::TopUp => Outcome::Unit(ic.deposit(child, launch.cycles).await),
    }
}

/// Runs one child operation until it ends (Done or Failed), its lock is taken over, or it reaches the read-only
/// `Confirm`: then the confirm goes on as a task of its own and this returns, so the caller can start the next child
/// while the confirm is under way (the child stays locked until the confirm is committed).
pub async fn drive_op<I: Ic + Clone + 'static>(ic: &I, mut launch: Launch) {
    loop {
        // Before the await: the lock (`launch.op_id`) and this step are already committed to stable memory.
        let outcome = perform(ic, &launch).await;
        // After the await: commit the result under the same lock; `None` = the operation ended or is no longer ours.
        let now = ic.now();
        match mutate_state(|s| rollout::on_result(s, launch.child, launch.op_id, outcome, now)) {
            Some(next) if next.step == Step::Confirm => {
                ic.spawn(finish_op(ic.clone(), next));
                return;
            }
            Some(next) => launch = next,
            None => {
                // The operation ended (or waits for a backoff): if that was the last work, the watchdog goes now, so an
                // idle parent has no timer armed (and can be upgraded without a stop).
                if !read_state(rollout::needs_ticks) {
                    ic.retire_watchdog();
                }
                return;
            }
        }
    }
}

/// An operation continued in a task of its own (see `drive_op`).
fn finish_op<I: Ic + Clone + 'static>(ic: I, launch: Launch) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move { drive_op(&ic, launch).await })
}

/// A worker: runs `launch`, then keeps taking the next queued child while admission allows (`rollout::launch`).
pub async fn run_worker<I: Ic + Clone + 'static>(ic: I, mut launch: Launch) {
    loop {
        drive_op(&ic, launch).await;
        if !ic.self_running() {
            // The parent is stopping (e.g. for its own upgrade): start nothing new so its call contexts can close.
            // A timer set now fires after a restart; an upgrade clears it and post_upgrade re-arms.
            if read_state(rollout::has_work) {
                ic.schedule_tick(Duration::ZERO);
            }
            return;
        }
        let now = ic.now();
        let mut next = mutate_state(|s| rollout::launch(s, now, 1));
        if next.more {
            // The planner read its budget of children already on the release: the tick goes on at once.
            ic.schedule_tick(Duration::ZERO);
        }
        match next.launches.pop() {
            Some(next) => launch = next,
            None => return,
        }
    }
}

/// One tick: commits the planner's progress and the new locks, re-arms itself if needed, and returns the operations
/// to start.
pub fn tick<I: Ic + Clone + 'static>(ic: &I) -> Vec<Launch> {
    let now = ic.now();
    let plan = mutate_state(|s| rollout::tick(s, now));
    if let Some(delay) = plan.rearm {
        ic.schedule_tick(delay);
    }
    if let Some(task) = read_state(rollout::store_task) {
        if !STORE_BUSY.replace(true) {
            ic.spawn(Box::pin(run_store(ic.clone(), task)));
        }
    }
    plan.launches
}

thread_local! {
    /// A store worker is running (one at a time). Heap only: an upgrade ends it, and the next tick starts another.
    static STORE_BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Fills (or clears) the parent's chunk store, one call at a time, until it holds the target's chunks; stops at a
/// failure (the next tick tries again).
async fn run_store<I: Ic>(ic: I, mut task: StoreTask) {
    loop {
        // Before the await: a clear forgets the chunks; an upload reads its chunk in this message.
        mutate_state(|s| rollout::on_store_call(s, task));
        let (expected, result) = match task {
            StoreTask::Clear => (None, ic.clear_chunk_store().await.map(|()| Vec::new())),
            StoreTask::Upload { index } => {
                let target = read_state(|s| s.target());
                match read_state(|s| s.module_chunk(&target, index)) {
                    Some(chunk) => (
                        Some(Sha256::digest(&chunk).into()),
                        ic.upload_chunk(chunk.into_owned()).await,
                    ),
                    None => (
                        None,
                        Err(CallError::new(
                            "upload_chunk",
                            0,
                            "the target's module is no longer stored",
                        )),
                    ),
                }
            }
        };
        // After the await: commit (checking the chunk's hash), then go on with what the store needs next.
        let done = mutate_state(|s| rollout::on_store_result(s, task, expected, result));
        match read_state(rollout::store_task) {
            Some(next) if done => task = next,
            _ => break,
        }
    }
    STORE_BUSY.set(false);
}

/// The real effects, with this module's tick as what the rollout timer runs.
pub fn cdk() -> CdkIc {
    CdkIc::new(run_tick, rollout::LOCK_CHECK_INTERVAL)
}

/// Wakes the rollout: a tick now (a no-op if one is already due).
pub fn wake() {
    cdk().schedule_tick(Duration::ZERO)
}

/// The body of the rollout timer (one-shot tick and watchdog): starts the tick's operations, and retires the
/// watchdog once nothing needs ticks (no work and no lock, or paused with no lock); the next `schedule_tick` arms it
/// again.
fn run_tick() {
    let ic = cdk();
    for launch in tick(&ic) {
        ic.spawn(run_worker(ic, launch));
    }
    if !read_state(rollout::needs_ticks) {
        ic.retire_watchdog();
    }
}

/// Awaits all futures concurrently (a minimal `join_all`, so as not to pull in the `futures` crate).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(
                outputs
                    .iter_mut()
                    .map(|o| o.take().expect("every future completed"))
                    .collect(),
            )
        }
    })
    .await
}
