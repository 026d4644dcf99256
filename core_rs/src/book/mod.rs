//! Order books: one per instrument, two ladders (bids and asks) over a shared order store.
//! The book knows nothing of funds or matching rules; `matching` drives it.

mod closed;
pub mod ladder;
pub mod orders;

use crate::codes::{MarketState, Side};
use ladder::Ladder;

#[derive(Clone, Debug)]
pub struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
    /// The instrument's trading phase; only `Continuous` matches on entry.
    pub market: MarketState,
    /// The price of the last trade (0 before the first): the auction's reference price.
    pub last_trade_ticks: u64,
}

impl Default for Book {
    fn default() -> Self {
        Book { bids: Ladder::new(true), asks: Ladder::new(false), market: MarketState::Continuous, last_trade_ticks: 0 }
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

    /// Whether the best bid reaches the best ask (possible only outside continuous trading).
    pub fn is_crossed(&self) -> bool {
        matches!((self.bids.best(), self.asks.best()), (Some(bid), Some(ask)) if bid >= ask)
    }

    /// The reference price, if the instrument has traded.
    pub fn reference_ticks(&self) -> Option<u64> {
        (self.last_trade_ticks != 0).then_some(self.last_trade_ticks)
    }
}
