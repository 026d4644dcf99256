//! The shadow: a second engine, kept by its own thread, that applies what its owner (a Raft
//! replica, or the durable engine) applied, in the same order, behind it. It hashes the state
//! at checkpoints and hands it to snapshots' serializers, so the owner's apply never stops for
//! a copy or a hash of the whole state; per batch it only hands over the records it applied.
//!
//! If the shadow falls `QUEUED_MAX` items behind, the owner stops feeding it. At the first
//! checkpoint or snapshot after the shadow caught up with what it was given, the owner sends a
//! copy of its state (apply waits for that one copy) and feeds it again. A checkpoint reached
//! while a later one is already queued is not hashed: digests never pile up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::command::Command;
use crate::spare::SpareEngine;
use crate::wire::{CommandRecord, EventRecord};
use crate::Engine;

/// Items the shadow may have queued before the owner stops feeding it.
pub(crate) const QUEUED_MAX: usize = 1 << 14;

/// What the shadow applies, in the order the owner applied it.
#[derive(Debug)]
pub(crate) enum ShadowWork {
    /// Records as the owner applied them (checked, timestamps clamped).
    Records(Vec<CommandRecord>),
    /// A command other than a record (configuration) with the timestamp the owner applied it at.
    Command { ts_ns: i64, command: Command },
    /// The state after the entry at this index is a checkpoint: hash it.
    Checkpoint(u64),
    /// The state at this point, lent to a snapshot's serializer.
    Visit(Visit),
    /// The owner's state was replaced or the shadow fell behind: continue from this copy.
    Reset(Box<Engine>),
}

/// What the shadow does with its state at one point of the log (on its own thread).
pub(crate) struct Visit(Box<dyn FnOnce(&Engine) + Send>);

impl std::fmt::Debug for Visit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Visit")
    }
}

/// Counts shared by both ends.
#[derive(Debug, Default)]
struct Queued {
    items: AtomicUsize,
    checkpoints: AtomicUsize,
}

/// The owner's end.
#[derive(Debug)]
pub(crate) struct ShadowFeed {
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
pub(crate) struct Shadow {
    engine: Engine,
    events: Vec<EventRecord>,
    queued: Arc<Queued>,
    spare: SpareEngine,
}

/// A shadow that starts from `engine` (a copy of the owner's state, or the state the owner's
/// next records continue), and the owner's end that feeds it. Copies for resyncs come from
/// (and replaced shadows go back to) `spare`.
pub(crate) fn shadow_of(engine: Engine, spare: &SpareEngine) -> (ShadowFeed, Shadow, mpsc::Receiver<ShadowWork>) {
    let (sender, work) = mpsc::channel();
    let queued = Arc::new(Queued::default());
    let feed = ShadowFeed { sender, queued: Arc::clone(&queued), spare: spare.clone(), in_step: true, gone: false };
    let shadow = Shadow { engine, events: Vec::new(), queued, spare: spare.clone() };
    (feed, shadow, work)
}

impl ShadowFeed {
    /// Hands over records the owner applied (nothing while the shadow is out of step).
    pub(crate) fn records(&mut self, records: Vec<CommandRecord>) {
        self.send(ShadowWork::Records(records));
    }

    /// Hands over a command the owner applied at `ts_ns`.
    pub(crate) fn command(&mut self, ts_ns: i64, command: Command) {
        self.send(ShadowWork::Command { ts_ns, command });
    }

    /// The entry at `index`, just applied to `engine`, is a checkpoint. True when the shadow
    /// will hash the state at it (unless a later checkpoint overtakes it); false when it is
    /// out of step and still catching up, or gone.
    pub(crate) fn checkpoint(&mut self, index: u64, engine: &Engine) -> bool {
        if !self.resync(engine) {
            return false;
        }
        self.send(ShadowWork::Checkpoint(index));
        self.in_step
    }

    /// Whether the shadow is in step; one out of step that took everything it was given
    /// continues from a copy of `engine` (the owner's state now) first.
    pub(crate) fn resync(&mut self, engine: &Engine) -> bool {
        if !self.in_step && !self.gone && self.queued.items.load(Ordering::Acquire) == 0 {
            self.reset(engine);
        }
        self.in_step
    }

    /// Lends the state the owner has now to `visit` (on the shadow's thread, once it got
    /// there). False, and `visit` dropped unrun, while the shadow is out of step.
    pub(crate) fn visit(&mut self, visit: impl FnOnce(&Engine) + Send + 'static) -> bool {
        self.send(ShadowWork::Visit(Visit(Box::new(visit))));
        self.in_step
    }

    /// Whether the shadow thread ended: the owner must hash its checkpoints itself.
    pub(crate) fn gone(&self) -> bool {
        self.gone
    }

    /// The owner's state is now `engine` (a snapshot installed): the shadow continues from
    /// a copy of it.
    pub(crate) fn reset(&mut self, engine: &Engine) {
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
    /// Starts from `engine` instead, before taking anything: a state built on the shadow's
    /// own thread (a snapshot restored a second time).
    pub(crate) fn start_from(&mut self, engine: Engine) {
        self.engine = engine;
    }

    /// Applies one item; at a checkpoint with no later one queued behind it, the digest.
    pub(crate) fn take(&mut self, work: ShadowWork) -> Option<(u64, [u8; 32])> {
        let digest = match work {
            ShadowWork::Records(records) => {
                self.events.clear();
                self.engine.apply_checked_records(&records, &mut self.events);
                None
            }
            ShadowWork::Command { ts_ns, command } => {
                self.events.clear();
                // The owner got the same outcome on the same state; a refusal changed nothing.
                let _refused = self.engine.apply(ts_ns, &command, &mut self.events);
                None
            }
            ShadowWork::Checkpoint(index) => {
                let overtaken = self.queued.checkpoints.fetch_sub(1, Ordering::AcqRel) > 1;
                (!overtaken).then(|| (index, self.engine.state_digest()))
            }
            ShadowWork::Visit(Visit(visit)) => {
                visit(&self.engine);
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
