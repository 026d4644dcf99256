//! Order books: one per instrument, two ladders (bids and asks) over a shared order store.
//! The book knows nothing of funds or matching rules; `matching` drives it.

pub mod ladder;
pub mod orders;

use crate::codes::Side;
use ladder::Ladder;

#[derive(Clone, Debug)]
pub struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
}

impl Default for Book {
    fn default() -> Self {
        Book { bids: Ladder::new(true), asks: Ladder::new(false) }
    }
}

impl Book {
    #[inline]
    pub fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn side_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Whether an order of `side` at `limit_ticks` would trade against the opposite best.
    #[inline]
    pub fn crosses(&self, side: Side, limit_ticks: u64) -> bool {
        match side {
            Side::Buy => self.asks.best().is_some_and(|ask| limit_ticks >= ask),
            Side::Sell => self.bids.best().is_some_and(|bid| limit_ticks <= bid),
        }
    }
}
