//! The shadow: a second engine per replica, kept by its own thread, that applies what the
//! replica applied (in log order, behind it) and hashes itself at checkpoints. Apply never
//! stops for a copy or a hash of the whole state; per entry it only hands over the records it
//! applied. It also serializes the state for Raft snapshots, so taking one does not stop
//! apply either.
//!
//! If the shadow falls `QUEUED_MAX` items behind, the replica stops feeding it. At the first
//! checkpoint after the shadow caught up with what it was given, the replica sends a copy of
//! its state (apply waits for that one copy) and feeds it again. A checkpoint reached while
//! a later one is already queued is not hashed: digests never pile up.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use super::state_machine::snapshot_bytes;
use super::SnapshotMeta;
use crate::command::Command;
use crate::spare::SpareEngine;
use crate::wire::{CommandRecord, EventRecord};
use crate::Engine;

/// Items the shadow may have queued before the replica stops feeding it.
pub(super) const QUEUED_MAX: usize = 1 << 14;

/// What the shadow applies, in the order the replica applied it.
#[derive(Debug)]
pub(super) enum ShadowWork {
    /// Records as the replica applied them (checked, timestamps clamped).
    Records(Vec<CommandRecord>),
    /// A configuration command with the timestamp the replica applied it at.
    Command { ts_ns: i64, command: Command },
    /// The state after the entry at this index is a checkpoint: hash it.
    Checkpoint(u64),
    /// A snapshot of the state at this point, for the Raft snapshot `meta` describes: its
    /// bytes (header, then `Engine::snapshot`) and digest.
    Snapshot { meta: SnapshotMeta, reply: tokio::sync::oneshot::Sender<io::Result<TakenSnapshot>> },
    /// The replica's state was replaced or the shadow fell behind: continue from this copy.
    Reset(Box<Engine>),
}

/// A snapshot's bytes (its header, then the engine's) and the state digest they restore to.
pub(super) type TakenSnapshot = (Vec<u8>, [u8; 32]);

/// Counts shared by both ends.
#[derive(Debug, Default)]
struct Queued {
    items: AtomicUsize,
    checkpoints: AtomicUsize,
}

/// The replica's end.
#[derive(Debug)]
pub(super) struct ShadowFeed {
    sender: mpsc::Sender<ShadowWork>,
    queued: Arc<Queued>,
    spare: SpareEngine,
    /// False from an overflow until a copy of the state resyncs the shadow.
    in_step: bool,
    /// The shadow thread ended (it panicked): nothing more goes to it.
    gone: bool,
}

/// The shadow thread's end.
#[derive(Debug)]
pub(super) struct Shadow {
    engine: Engine,
    events: Vec<EventRecord>,
    queued: Arc<Queued>,
    spare: SpareEngine,
}

/// A shadow that starts as a copy of `engine`, and the replica's end that feeds it. Copies
/// for resyncs come from (and replaced shadows go back to) `spare`.
pub(super) fn shadow_of(engine: &Engine, spare: &SpareEngine) -> (ShadowFeed, Shadow, mpsc::Receiver<ShadowWork>) {
    let (sender, work) = mpsc::channel();
    let queued = Arc::new(Queued::default());
    let feed = ShadowFeed { sender, queued: Arc::clone(&queued), spare: spare.clone(), in_step: true, gone: false };
    let shadow = Shadow { engine: spare.copy_of(engine), events: Vec::new(), queued, spare: spare.clone() };
    (feed, shadow, work)
}

impl ShadowFeed {
    /// Hands over records the replica applied (nothing while the shadow is out of step).
    pub(super) fn records(&mut self, records: Vec<CommandRecord>) {
        self.send(ShadowWork::Records(records));
    }

    /// Hands over a configuration command the replica applied at `ts_ns`.
    pub(super) fn command(&mut self, ts_ns: i64, command: Command) {
        self.send(ShadowWork::Command { ts_ns, command });
    }

    /// The entry at `index`, just applied to `engine`, is a checkpoint. True when the shadow
    /// will hash the state at it (unless a later checkpoint overtakes it); false when it is
    /// out of step and still catching up, or gone.
    pub(super) fn checkpoint(&mut self, index: u64, engine: &Engine) -> bool {
        if !self.in_step {
            if self.gone || self.queued.items.load(Ordering::Acquire) > 0 {
                return false;
            }
            self.reset(engine);
        }
        self.send(ShadowWork::Checkpoint(index));
        self.in_step
    }

    /// Asks for a snapshot of the state the replica has now (the shadow takes it once it got
    /// there); None while the shadow is out of step.
    pub(super) fn snapshot(
        &mut self,
        meta: SnapshotMeta,
    ) -> Option<tokio::sync::oneshot::Receiver<io::Result<TakenSnapshot>>> {
        let (reply, taken) = tokio::sync::oneshot::channel();
        self.send(ShadowWork::Snapshot { meta, reply });
        self.in_step.then_some(taken)
    }

    /// Whether the shadow thread ended: the replica must hash its checkpoints itself.
    pub(super) fn gone(&self) -> bool {
        self.gone
    }

    /// The replica's state is now `engine` (a snapshot installed): the shadow continues from
    /// a copy of it.
    pub(super) fn reset(&mut self, engine: &Engine) {
        self.in_step = !self.gone;
        self.send(ShadowWork::Reset(Box::new(self.spare.copy_of(engine))));
    }

    /// Sends `work` while in step; an overflow or a gone shadow puts it out of step.
    fn send(&mut self, work: ShadowWork) {
        if !self.in_step {
            return;
        }
        if self.queued.items.load(Ordering::Acquire) >= QUEUED_MAX {
            self.in_step = false;
            return;
        }
        if matches!(work, ShadowWork::Checkpoint(_)) {
            self.queued.checkpoints.fetch_add(1, Ordering::AcqRel);
        }
        self.queued.items.fetch_add(1, Ordering::AcqRel);
        if self.sender.send(work).is_err() {
            (self.in_step, self.gone) = (false, true);
        }
    }
}

impl Shadow {
    /// Applies one item; at a checkpoint with no later one queued behind it, the digest.
    pub(super) fn take(&mut self, work: ShadowWork) -> Option<(u64, [u8; 32])> {
        let digest = match work {
            ShadowWork::Records(records) => {
                self.events.clear();
                self.engine.apply_checked_records(&records, &mut self.events);
                None
            }
            ShadowWork::Command { ts_ns, command } => {
                self.events.clear();
                // The replica got the same outcome on the same state; a refusal changed nothing.
                let _refused = self.engine.apply(ts_ns, &command, &mut self.events);
                None
            }
            ShadowWork::Checkpoint(index) => {
                let overtaken = self.queued.checkpoints.fetch_sub(1, Ordering::AcqRel) > 1;
                (!overtaken).then(|| (index, self.engine.state_digest()))
            }
            ShadowWork::Snapshot { meta, reply } => {
                // Nobody waits any more if the builder was dropped: nothing to do then.
                let _unwanted = reply.send(snapshot_bytes(&self.engine, meta));
                None
            }
            ShadowWork::Reset(engine) => {
                self.spare.keep(std::mem::replace(&mut self.engine, *engine));
                None
            }
        };
        self.queued.items.fetch_sub(1, Ordering::AcqRel);
        digest
    }
}
