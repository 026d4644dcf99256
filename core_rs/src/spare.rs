//! A spare engine: memory already laid out for a copy of the state. A snapshot or a checkpoint
//! digest copies the state into it (`clone_from`: no allocation, no page faults where it
//! reaches) instead of into fresh pages, and gives it back when done. The price is a second
//! copy of the state kept between copies.
//!
//! A copy of a state bigger than the spare has room for grows it in fresh memory: into no
//! spare at all (the first snapshot of a process that loaded none), 0.4 s at 1,000,000 live
//! orders on this project's VM, against 30–60 ms into memory laid out (bench/README.md). So
//! while the book grows, `lay_out_ahead` lays out a roomier spare in the background, before
//! the copy needs it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::limits::ORDERS_LIVE_MAX;
use crate::Engine;

/// Below this many live orders no spare is laid out: a copy into fresh memory pauses order
/// entry about 20 ms at most (34–40 ms at 100,000 live orders).
pub(crate) const LAY_OUT_FROM_LIVE_ORDERS: usize = 1 << 16;

/// Shared by whoever copies the state and whoever gives the copy back (clones share the slot).
#[derive(Clone, Debug, Default)]
pub(crate) struct SpareEngine {
    slot: Arc<Mutex<Slot>>,
    /// `Slot::room`, read without the lock after every batch.
    room: Arc<AtomicUsize>,
    laying_out: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Slot {
    engine: Option<Engine>,
    /// Live orders a copy into the spare finds memory laid out for (unchanged while the spare
    /// is out).
    room: usize,
}

impl SpareEngine {
    /// A copy of `engine`, in the spare's memory (or fresh memory while the spare is in use).
    pub(crate) fn copy_of(&self, engine: &Engine) -> Engine {
        let mut copy = self.lock().engine.take().unwrap_or_default();
        copy.clone_from(engine);
        copy
    }

    /// Keeps `engine` (a copy done with, or an engine restored: its layout has room for its own
    /// live orders) for the next copy, unless a roomier spare was laid out meanwhile.
    pub(crate) fn keep(&self, engine: Engine) {
        let room = engine.live_orders();
        self.offer(engine, room);
    }

    /// Lays out, in the background, a spare with room for twice `live_orders` once the book has
    /// outgrown the spare's room by an eighth (a copy a little past the room grows a few tables
    /// only). One layout at a time.
    pub(crate) fn lay_out_ahead(&self, live_orders: usize) {
        let room = self.room.load(Ordering::Relaxed);
        if live_orders < LAY_OUT_FROM_LIVE_ORDERS || live_orders <= room + room / 8 {
            return;
        }
        if self.laying_out.swap(true, Ordering::Acquire) {
            return;
        }
        let spare = self.clone();
        let room = (2 * live_orders).min(ORDERS_LIVE_MAX);
        std::thread::spawn(move || {
            crate::threads::give_way_to_order_entry();
            let mut engine = Engine::default();
            engine.preallocate(room);
            spare.offer(engine, room);
            spare.laying_out.store(false, Ordering::Release);
        });
    }

    fn offer(&self, engine: Engine, room: usize) {
        let mut slot = self.lock();
        if slot.engine.is_some() && room < slot.room {
            return; // `engine` is freed after the lock is let go
        }
        let replaced = slot.engine.replace(engine);
        slot.room = room;
        self.room.store(room, Ordering::Relaxed);
        // Freeing hundreds of MB takes a while: not while a snapshot's copy may wait for the lock.
        drop(slot);
        drop(replaced);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_laid_out_ahead_is_not_given_up_for_a_smaller_copy() {
        let spare = SpareEngine::default();
        spare.lay_out_ahead(LAY_OUT_FROM_LIVE_ORDERS - 1);
        assert!(!spare.laying_out.load(Ordering::Acquire), "a small book lays out nothing");
        spare.lay_out_ahead(LAY_OUT_FROM_LIVE_ORDERS);
        while spare.laying_out.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(spare.room.load(Ordering::Relaxed), 2 * LAY_OUT_FROM_LIVE_ORDERS);
        spare.keep(Engine::new());
        assert_eq!(spare.lock().room, 2 * LAY_OUT_FROM_LIVE_ORDERS, "an engine with less room is dropped");
        spare.lay_out_ahead(2 * LAY_OUT_FROM_LIVE_ORDERS + LAY_OUT_FROM_LIVE_ORDERS / 4);
        assert!(!spare.laying_out.load(Ordering::Acquire), "within an eighth past the room: no layout");
        // The copy goes to a snapshot, which gives back the engine its body restores.
        let copy = spare.copy_of(&Engine::new());
        assert!(spare.lock().engine.is_none());
        drop(copy);
        spare.keep(Engine::new());
        assert_eq!(spare.room.load(Ordering::Relaxed), 0, "the spare out, what comes back is kept");
    }
}
