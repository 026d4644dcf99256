//! A spare engine: memory already laid out for a copy of the state. A shadow's resync, or a
//! snapshot taken while the shadow is out of step, copies the state into it (`clone_from`: no
//! allocation, no page faults where it reaches) instead of into fresh pages, and gives it back
//! when done. The price is a second copy of the state kept between copies.

use std::sync::{Arc, Mutex, PoisonError};

use crate::Engine;

/// Shared by whoever copies the state and whoever gives the copy back (clones share the slot).
#[derive(Clone, Debug, Default)]
pub(crate) struct SpareEngine(Arc<Mutex<Option<Engine>>>);

impl SpareEngine {
    /// A copy of `engine`, in the spare's memory (or fresh memory while the spare is in use).
    pub(crate) fn copy_of(&self, engine: &Engine) -> Engine {
        let mut copy = self.lock().take().unwrap_or_default();
        copy.clone_from(engine);
        copy
    }

    /// Keeps `engine` (a copy done with, or any engine laid out) for the next copy.
    pub(crate) fn keep(&self, engine: Engine) {
        let replaced = self.lock().replace(engine);
        // Freeing hundreds of MB takes a while: not while a copy may wait for the lock.
        drop(replaced);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Engine>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
