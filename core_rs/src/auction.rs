//! The call auction's price: where a crossed book uncrosses (see `SEMANTICS.md`, Call
//! auction).
//!
//! At a price `p` the buy volume `B(p)` is the lots bid at `p` or higher and the sell volume
//! `S(p)` the lots offered at `p` or lower; `min(B, S)` can execute. The uncross price is the
//! tick with the maximum executable volume; then the minimum imbalance `|B − S|`; then market
//! pressure (the highest such price if buyers remain at every one, the lowest if sellers
//! do); then the one closest to the reference price (the last trade), or, before any trade,
//! the middle of the range (rounded down).
//!
//! `B` and `S` change only at the book's level prices, so the search walks those prices and
//! the open ranges between them instead of every tick. `min(B, S)` rises while `S < B` and
//! falls once `B ≤ S`, and on its plateau the imbalance falls then rises, so the prices that
//! tie after the second rule form one range of ticks `[low, high]`, and the third and fourth
//! rules pick a point of it. `tests/auction_props.rs` checks the result against a search
//! over every tick.

use crate::book::Book;
use crate::codes::Side;

/// The uncross the book would have now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Indicative {
    pub price_ticks: u64,
    /// Lots that execute at the price.
    pub volume_lots: u64,
    /// `|B − S|` at the price.
    pub imbalance_lots: u64,
    /// The side with lots left over at the price, if either.
    pub surplus: Option<Side>,
}

/// A price range over which the buy and sell volumes are constant.
#[derive(Clone, Copy)]
struct Segment {
    low_ticks: u64,
    high_ticks: u64,
    buy_lots: u64,
    sell_lots: u64,
}

impl Segment {
    fn volume(&self) -> u64 {
        self.buy_lots.min(self.sell_lots)
    }

    fn imbalance(&self) -> u64 {
        self.buy_lots.abs_diff(self.sell_lots)
    }
}

/// The uncross of a crossed book; `None` when nothing would execute (the book is not crossed).
pub fn indicative(book: &Book) -> Option<Indicative> {
    let (best_bid, best_ask) = (book.bids.best()?, book.asks.best()?);
    if best_bid < best_ask {
        return None;
    }
    // Only levels inside [best ask, best bid] can trade; outside it nothing executes.
    let bids: Vec<(u64, u64)> =
        book.bids.levels().take_while(|&(p, _)| p >= best_ask).map(|(p, l)| (p, l.total_lots)).collect();
    let asks: Vec<(u64, u64)> =
        book.asks.levels().take_while(|&(p, _)| p <= best_bid).map(|(p, l)| (p, l.total_lots)).collect();
    let mut prices: Vec<u64> = bids.iter().chain(&asks).map(|&(p, _)| p).collect();
    prices.sort_unstable();
    prices.dedup();

    // Ascending prices: S grows as asks at or below the price are added; B shrinks as bids
    // below the price drop out.
    let mut buy_lots: u64 = bids.iter().map(|&(_, lots)| lots).sum();
    let mut sell_lots = 0u64;
    let (mut bid_index, mut ask_index) = (bids.len(), 0usize); // bids are best (highest) first
    let mut segments = Vec::with_capacity(prices.len() * 2);
    for (index, &price) in prices.iter().enumerate() {
        while bid_index > 0 && bids[bid_index - 1].0 < price {
            bid_index -= 1;
            buy_lots -= bids[bid_index].1;
        }
        while ask_index < asks.len() && asks[ask_index].0 <= price {
            sell_lots += asks[ask_index].1;
            ask_index += 1;
        }
        segments.push(Segment { low_ticks: price, high_ticks: price, buy_lots, sell_lots });
        if let Some(&next) = prices.get(index + 1) {
            if next - price >= 2 {
                // Strictly between two level prices: the bids at `price` no longer count.
                let level_bid = bids[..bid_index].last().filter(|&&(p, _)| p == price).map_or(0, |&(_, l)| l);
                let between =
                    Segment { low_ticks: price + 1, high_ticks: next - 1, buy_lots: buy_lots - level_bid, sell_lots };
                segments.push(between);
            }
        }
    }

    let best = segments.iter().map(|s| (s.volume(), std::cmp::Reverse(s.imbalance()))).max()?;
    if best.0 == 0 {
        return None;
    }
    let tied: Vec<&Segment> =
        segments.iter().filter(|s| (s.volume(), std::cmp::Reverse(s.imbalance())) == best).collect();
    let low = tied.iter().map(|s| s.low_ticks).min().expect("one segment at least");
    let high = tied.iter().map(|s| s.high_ticks).max().expect("one segment at least");
    let price_ticks = if tied.iter().all(|s| s.buy_lots > s.sell_lots) {
        high
    } else if tied.iter().all(|s| s.sell_lots > s.buy_lots) {
        low
    } else {
        match book.reference_ticks() {
            Some(reference) => reference.clamp(low, high),
            None => low + (high - low) / 2,
        }
    };
    let at = tied.iter().find(|s| (s.low_ticks..=s.high_ticks).contains(&price_ticks)).expect("price in a tied range");
    let surplus = match at.buy_lots.cmp(&at.sell_lots) {
        std::cmp::Ordering::Greater => Some(Side::Buy),
        std::cmp::Ordering::Less => Some(Side::Sell),
        std::cmp::Ordering::Equal => None,
    };
    Some(Indicative { price_ticks, volume_lots: at.volume(), imbalance_lots: at.imbalance(), surplus })
}

/// Whether `price_ticks` lies within `band_bps` of the reference price (always, before the
/// first trade: there is nothing to measure against).
pub fn within_band(price_ticks: u64, reference_ticks: Option<u64>, band_bps: u16) -> bool {
    reference_ticks.is_none_or(|reference| {
        u128::from(price_ticks.abs_diff(reference)) * 10_000 <= u128::from(reference) * u128::from(band_bps)
    })
}
