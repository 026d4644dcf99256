//! pyexchange's data plane: a deterministic trading engine — order books, matching and the
//! account ledger in one state machine — and the fixed-size records of its batch path.
//!
//! The rules it follows are in `SEMANTICS.md`; the limits in [`limits`]. The engine knows
//! nothing of Python: the PyO3 binding is the `python` leaf module, built only with the
//! `python` feature.

/// `Clone` for a type whose `clone_from` is written by hand (a copy into the target's own
/// memory, for snapshots): `clone` copies into a default value.
macro_rules! clone_through_clone_from {
    ($type:ty) => {
        fn clone(&self) -> Self {
            let mut copy = <$type>::default();
            copy.clone_from(self);
            copy
        }
    };
}

pub mod auction;
pub mod book;
mod codec;
pub mod codes;
pub mod command;
pub mod durable;
pub mod engine;
pub mod instrument;
pub mod journal;
pub mod ledger;
pub mod limits;
pub mod matching;
mod pages;
pub mod replay;
pub mod replication;
mod shadow;
mod snapshot;
mod spare;
mod state;
mod threads;
pub mod timestamp;
pub mod views;
pub mod websocket;
pub mod wire;

#[cfg(feature = "python")]
mod python;

pub use engine::{Engine, EngineError};
