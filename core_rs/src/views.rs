//! The gateway's private views: each order as the gateway answers for it (the engine's order
//! as its last durable batch left it, plus its times, fees and last fill), each account's open
//! and closed orders, client order ids, and each account's fills. They follow durable batches
//! in sequence order (`PrivateViews::apply`), from the batch's event records and the orders it
//! touched as the engine had them right after it was applied
//! (`touched_orders`).
//!
//! In Rust, not Python, for two reasons measured on the gateway's WebSocket order path
//! (bench/README.md): following a batch in Python cost each order about 3.5 µs of the event
//! loop, a seventh of its path, and a million orders kept as Python objects held the loop
//! 0.2 s at every full garbage collection. Here an order is one record, and the collector never
//! sees it.
//!
//! Bounded as the Python views were: closed orders beyond `Limits::closed_orders_max` and
//! fills beyond `Limits::fills_per_account_max` per account are forgotten, oldest first. The
//! two big indexes grow without a long stall (`GradedMap`).

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::ops::RangeInclusive;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::book::orders::Order;
use crate::codes::{EventKind, OrderState, Side};
use crate::command::{ClientOrderId, NO_CLIENT_ORDER_ID};
use crate::engine::Engine;
use crate::wire::EventRecord;

/// An order as the engine had it right after a batch (`touched_orders`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderFields {
    pub id: u64,
    pub account: u64,
    pub instrument: u32,
    pub side: Side,
    pub order_type: u8,
    pub stp: u8,
    pub state: OrderState,
    pub price_ticks: u64,
    pub size_lots: u64,
    pub filled_lots: u64,
    pub filled_price_lots: u128,
    pub client_order_id: ClientOrderId,
}

impl From<&Order> for OrderFields {
    fn from(o: &Order) -> Self {
        OrderFields {
            id: o.id,
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            order_type: o.order_type.code(),
            stp: o.stp.code(),
            state: o.state,
            price_ticks: o.price_ticks,
            size_lots: o.size_lots,
            filled_lots: o.filled_lots(),
            filled_price_lots: o.filled_price_lots,
            client_order_id: o.client_order_id,
        }
    }
}

impl OrderFields {
    fn is_open(&self) -> bool {
        matches!(self.state, OrderState::Live | OrderState::PartiallyFilled)
    }
}

/// An order's last fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastFill {
    pub ts_ms: i64,
    pub price_ticks: u64,
    pub lots: u64,
    pub trade_id: u64,
}

/// An order as the views know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    /// Its client order id is the place command's (`NO_CLIENT_ORDER_ID`: placed without one).
    pub order: OrderFields,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Fees paid over its fills, in minor units of the instrument's quote asset.
    pub fee_units: u128,
    pub last_fill: Option<LastFill>,
    /// Among its account's open orders (until the batch that closes it).
    pub listed_open: bool,
}

/// One side of a fill, as its account sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRecord {
    pub instrument: u32,
    pub trade_id: u64,
    pub order_id: u64,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub price_ticks: u64,
    pub lots: u64,
    pub fee_units: u64,
    pub maker: bool,
    pub ts_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub closed_orders_max: usize,
    pub fills_per_account_max: usize,
    /// Trade ids are `seq * fills_per_command_max + n`, the n-th fill of the command `seq`.
    pub fills_per_command_max: u64,
}

#[derive(Debug)]
pub struct PrivateViews {
    /// Boxed: a shard that grows moves 16 bytes an order, not its 176-byte record, and its new
    /// table is that much less memory to fault in (bench/README.md).
    orders: GradedMap<u64, Box<OrderRecord>>,
    /// Each account's open orders; ids are handed out in sequence, so by id is oldest first.
    open_by_account: FxHashMap<u64, BTreeSet<u64>>,
    /// Each account's retained closed orders, in the order they closed.
    closed_by_account: FxHashMap<u64, VecDeque<u64>>,
    /// Every retained closed order, in the order they closed.
    closed: VecDeque<u64>,
    by_client_id: GradedMap<(u64, ClientOrderId), u64>,
    fills: FxHashMap<u64, VecDeque<FillRecord>>,
    limits: Limits,
}

/// A batch's records do not fit together (an event of no command of the batch, an order the
/// batch touched twice); nothing of the batch was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMismatch(pub String);

impl PrivateViews {
    pub fn new(limits: Limits) -> Self {
        PrivateViews {
            orders: GradedMap::new(),
            open_by_account: FxHashMap::default(),
            closed_by_account: FxHashMap::default(),
            closed: VecDeque::new(),
            by_client_id: GradedMap::new(),
            fills: FxHashMap::default(),
            limits,
        }
    }

    /// Follows one durable batch: the events of its commands (`seqs`) and the orders the batch
    /// touched (`touched_orders`, read right after it was applied).
    /// Returns the orders whose views it changed, as (order id, account), in the order the
    /// events first name them.
    pub fn apply(
        &mut self,
        events: &[EventRecord],
        seqs: RangeInclusive<u64>,
        touched: &[OrderFields],
    ) -> Result<Vec<(u64, u64)>, BatchMismatch> {
        let mut touched_at = FxHashMap::with_capacity_and_hasher(touched.len(), FxBuildHasher);
        for (index, order) in touched.iter().enumerate() {
            if touched_at.insert(order.id, index).is_some() {
                return Err(BatchMismatch(format!("order {} is touched twice", order.id)));
            }
        }
        if let Some(stray) = events.iter().find(|e| !seqs.contains(&e.seq)) {
            return Err(BatchMismatch(format!("an event of seq {} in the batch of seqs {seqs:?}", stray.seq)));
        }
        // Order id -> the time of the last event that names it.
        let mut named_ms: FxHashMap<u64, i64> = FxHashMap::with_capacity_and_hasher(events.len(), FxBuildHasher);
        for group in events.chunk_by(|a, b| a.seq == b.seq) {
            let mut fills_seen = 0;
            for event in group {
                let ts_ms = event.ts_ns.div_euclid(1_000_000);
                let kind = event.kind();
                match kind {
                    EventKind::Accepted => {
                        if let Some(&index) = touched_at.get(&event.order_id) {
                            self.accepted(event, &touched[index], ts_ms);
                        }
                    }
                    EventKind::Fill => {
                        self.fill(event, fills_seen, ts_ms);
                        fills_seen += 1;
                        named_ms.insert(event.maker_order_id, ts_ms);
                    }
                    _ => {}
                }
                if kind < EventKind::MarketState && event.order_id != 0 {
                    named_ms.insert(event.order_id, ts_ms);
                }
            }
        }
        let mut changed = Vec::with_capacity(touched.len());
        for order in touched {
            if let Some(&updated_ms) = named_ms.get(&order.id).or(self.orders.get(&order.id).map(|r| &r.updated_ms)) {
                if self.update(order, updated_ms) {
                    changed.push((order.id, order.account));
                }
            }
        }
        Ok(changed)
    }

    fn accepted(&mut self, event: &EventRecord, order: &OrderFields, ts_ms: i64) {
        let record = OrderRecord {
            order: *order,
            created_ms: ts_ms,
            updated_ms: ts_ms,
            fee_units: 0,
            last_fill: None,
            listed_open: true,
        };
        self.orders.insert(event.order_id, Box::new(record)); // (an order is accepted once)
        self.open_by_account.entry(event.account).or_default().insert(event.order_id);
        if order.client_order_id != NO_CLIENT_ORDER_ID {
            self.by_client_id.insert((event.account, order.client_order_id), event.order_id);
        }
    }

    fn fill(&mut self, event: &EventRecord, n: u64, ts_ms: i64) {
        assert!(n < self.limits.fills_per_command_max, "more fills in one command than trade ids");
        let trade_id = event.seq * self.limits.fills_per_command_max + n;
        let taker_side = Side::from_code(event.side).expect("a fill has a side");
        let sides = [
            (event.account, event.order_id, taker_side, event.taker_fee, false),
            (event.maker_account, event.maker_order_id, taker_side.opposite(), event.maker_fee, true),
        ];
        for (account, order_id, side, fee_units, maker) in sides {
            let Some(record) = self.orders.get_mut(&order_id) else { continue };
            record.fee_units += u128::from(fee_units);
            record.last_fill =
                Some(LastFill { ts_ms, price_ticks: event.price_ticks, lots: event.size_lots, trade_id });
            let fill = FillRecord {
                instrument: event.instrument,
                trade_id,
                order_id,
                client_order_id: record.order.client_order_id,
                side,
                price_ticks: event.price_ticks,
                lots: event.size_lots,
                fee_units,
                maker,
                ts_ms,
            };
            let fills = self.fills.entry(account).or_default();
            if fills.len() == self.limits.fills_per_account_max {
                fills.pop_front();
            }
            fills.push_back(fill);
        }
    }

    /// The order as the engine now has it, touched at `updated_ms`; a closed order moves from
    /// its account's open orders to its closed ones. Whether the order is known.
    fn update(&mut self, order: &OrderFields, updated_ms: i64) -> bool {
        let Some(record) = self.orders.get_mut(&order.id) else { return false };
        let closes = record.listed_open && !order.is_open();
        record.order = *order;
        record.updated_ms = updated_ms;
        record.listed_open &= !closes;
        if closes {
            if let Some(open) = self.open_by_account.get_mut(&order.account) {
                open.remove(&order.id);
            }
            self.closed_by_account.entry(order.account).or_default().push_back(order.id);
            self.closed.push_back(order.id);
            while self.closed.len() > self.limits.closed_orders_max {
                let oldest = self.closed.pop_front().expect("longer than the limit");
                self.forget(oldest);
            }
        }
        true
    }

    fn forget(&mut self, order_id: u64) {
        let Some(record) = self.orders.remove(&order_id) else { return };
        let account = record.order.account;
        if let Some(closed) = self.closed_by_account.get_mut(&account) {
            if closed.front() == Some(&order_id) {
                closed.pop_front();
            }
        }
        if record.order.client_order_id != NO_CLIENT_ORDER_ID {
            self.by_client_id.remove(&(account, record.order.client_order_id));
        }
    }

    pub fn order(&self, order_id: u64) -> Option<&OrderRecord> {
        self.orders.get(&order_id).map(AsRef::as_ref)
    }

    /// The order of `account` placed with `client_order_id`, if the views know it.
    pub fn order_id_of(&self, account: u64, client_order_id: &ClientOrderId) -> Option<u64> {
        self.by_client_id.get(&(account, *client_order_id)).copied()
    }

    pub fn open_count(&self, account: u64) -> usize {
        self.open_by_account.get(&account).map_or(0, BTreeSet::len)
    }

    /// The account's open orders, oldest first.
    pub fn open_ids(&self, account: u64) -> impl Iterator<Item = u64> + '_ {
        self.open_by_account.get(&account).into_iter().flatten().copied()
    }

    /// The account's retained closed orders, in the order they closed.
    pub fn closed_ids(&self, account: u64) -> impl Iterator<Item = u64> + '_ {
        self.closed_by_account.get(&account).into_iter().flatten().copied()
    }

    /// The account's retained fills, oldest first.
    pub fn fills(&self, account: u64) -> impl Iterator<Item = &FillRecord> + '_ {
        self.fills.get(&account).into_iter().flatten()
    }
}

/// What the views and the gateway read from the engine right after a batch is applied, from its
/// events: the orders they name (in the order they first name them; an order the engine no
/// longer knows is left out), the accounts they concern, the instruments whose book or trades
/// they may have changed, and whether any event is public (a fill, an uncross or a market
/// event), which the gateway's public views follow.
#[derive(Debug, Default)]
pub struct BatchReads {
    pub orders: Vec<OrderFields>,
    pub accounts: BTreeSet<u64>,
    pub instruments: BTreeSet<u32>,
    pub public: bool,
}

pub fn touched_orders(engine: &Engine, events: &[EventRecord]) -> BatchReads {
    let instruments_known = engine.instrument_specs().count() as u64;
    let mut reads = BatchReads::default();
    let mut named = FxHashSet::default();
    let mut touched = Vec::new();
    for event in events {
        let kind = event.kind();
        if kind >= EventKind::MarketState {
            reads.instruments.insert(event.instrument);
            reads.public = true;
            continue;
        }
        reads.accounts.insert(event.account);
        if kind == EventKind::Fill {
            reads.accounts.insert(event.maker_account);
            reads.public = true;
            if named.insert(event.maker_order_id) {
                touched.push((event.maker_account, event.maker_order_id));
            }
        }
        if kind == EventKind::Rejected {
            continue;
        }
        if event.is_asset == 0 && u64::from(event.instrument) < instruments_known {
            reads.instruments.insert(event.instrument);
        }
        if event.order_id != 0 && named.insert(event.order_id) {
            touched.push((event.account, event.order_id));
        }
    }
    reads.orders =
        touched.iter().filter_map(|&(account, id)| engine.order(account, id)).map(OrderFields::from).collect();
    reads
}

// ---- growth without a long stall ----

const GRADED_SHARDS: usize = 64;
/// A power of two, so that a key's route is bits of its hash.
const GRADED_ROUTES: usize = 16_384;

/// A hash map of up to millions of entries whose growth never stalls its caller long.
///
/// A map that fills up moves every entry to a table twice the size within one insertion; split
/// evenly by hash, shards fill at one rate and all double within a few hundred insertions of
/// each other. Here shard i takes keys in proportion to 2^(i / GRADED_SHARDS) (`graded_routes`):
/// at any size their tables stand at points spread over one doubling, so they grow at their own
/// times, each moving about 1.1 / GRADED_SHARDS of the entries.
#[derive(Debug)]
struct GradedMap<K, V> {
    shards: Vec<FxHashMap<K, V>>,
    shard_of_route: Vec<u8>,
}

impl<K: Hash + Eq, V> GradedMap<K, V> {
    fn new() -> Self {
        GradedMap {
            shards: (0..GRADED_SHARDS).map(|_| FxHashMap::default()).collect(),
            shard_of_route: graded_routes(GRADED_SHARDS, GRADED_ROUTES),
        }
    }

    fn shard(&self, key: &K) -> usize {
        // The hash mixed again (Fibonacci hashing) and its top bits: Fx hashes of ids handed out
        // in sequence differ little in any one range of bits.
        let mixed = FxBuildHasher.hash_one(key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::from(self.shard_of_route[(mixed >> (64 - GRADED_ROUTES.trailing_zeros())) as usize])
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.shards[self.shard(key)].get(key)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let shard = self.shard(key);
        self.shards[shard].get_mut(key)
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard(&key);
        self.shards[shard].insert(key, value)
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let shard = self.shard(key);
        self.shards[shard].remove(key)
    }
}

/// The shard of each route: shard i takes a share of the routes proportional to
/// 2^(i / shards), rounded by largest remainder, so that the shares spread over one doubling.
/// Each shard's routes are spread evenly over the list.
fn graded_routes(shards: usize, routes: usize) -> Vec<u8> {
    let weights: Vec<f64> = (0..shards).map(|i| (i as f64 / shards as f64).exp2()).collect();
    let total: f64 = weights.iter().sum();
    let quotas: Vec<f64> = weights.iter().map(|w| routes as f64 * w / total).collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| *q as usize).collect();
    let mut by_remainder: Vec<usize> = (0..shards).collect();
    by_remainder.sort_by(|&a, &b| (quotas[b] - counts[b] as f64).total_cmp(&(quotas[a] - counts[a] as f64)));
    let short = routes - counts.iter().sum::<usize>();
    for &shard in &by_remainder[..short] {
        counts[shard] += 1;
    }
    let mut placed: Vec<(f64, usize)> = counts
        .iter()
        .enumerate()
        .flat_map(|(shard, &count)| (0..count).map(move |k| ((k as f64 + 0.5) / count as f64, shard)))
        .collect();
    placed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    placed.into_iter().map(|(_, shard)| u8::try_from(shard).expect("at most 256 shards")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_give_each_shard_its_own_share_growing_by_one_doubling() {
        let routes = graded_routes(GRADED_SHARDS, GRADED_ROUTES);
        let shares: Vec<usize> =
            (0..GRADED_SHARDS).map(|shard| routes.iter().filter(|&&s| usize::from(s) == shard).count()).collect();
        assert_eq!(routes.len(), GRADED_ROUTES);
        assert!(shares.windows(2).all(|pair| pair[0] < pair[1]), "no two shards fill in step: {shares:?}");
        let ratio = shares[GRADED_SHARDS - 1] as f64 / shares[0] as f64;
        assert!(1.9 < ratio && ratio < 2.0, "{ratio}");
    }

    /// (insertion, entries before) of each insertion that grew a shard's table.
    fn growths<K: Hash + Eq>(keys: impl Iterator<Item = K>) -> Vec<(usize, usize)> {
        let mut map: GradedMap<K, usize> = GradedMap::new();
        let mut grown = Vec::new();
        for (n, key) in keys.enumerate() {
            let shard = map.shard(&key);
            let (entries, capacity) = (map.shards[shard].len(), map.shards[shard].capacity());
            map.insert(key, n);
            if map.shards[shard].capacity() != capacity {
                grown.push((n, entries));
            }
        }
        grown
    }

    /// One map moves all its entries in one insertion when it grows; shards split evenly by hash
    /// fill in step and move them all within a few hundred insertions. Graded shards grow one at
    /// a time: no run of n/64 insertions (n entries at its start) moves n/4 entries.
    fn assert_growth_spread(grown: &[(usize, usize)]) {
        assert!(grown.len() > 5 * GRADED_SHARDS, "every shard grew several times");
        for &(start, _) in grown.iter().filter(|(start, _)| *start >= 20_000) {
            let moved: usize =
                grown.iter().filter(|(n, _)| (start..start + start / 64).contains(n)).map(|(_, entries)| entries).sum();
            assert!(moved <= start / 4, "{moved} entries moved in {} insertions from {start}", start / 64);
        }
    }

    #[test]
    fn no_stretch_of_insertions_moves_a_quarter_of_the_entries() {
        assert_growth_spread(&growths(1..=300_000u64));
        let client_ids = (0..300_000u32).map(|i| {
            let mut id = NO_CLIENT_ORDER_ID;
            let text = format!("client-{i}");
            id[..text.len()].copy_from_slice(text.as_bytes());
            (7u64, id)
        });
        assert_growth_spread(&growths(client_ids));
    }
}
