//! The canonical view of engine state: the state hash and the invariant checks.
//!
//! The hash covers everything that can influence a future event or query — counters,
//! assets, instruments, every account's balances in account-id order, every book's market
//! state, last trade price and levels from the best outward (each with its first order's
//! id), the live orders with the order behind each in its level (which with the levels' first
//! orders fixes time priority), the retained closed orders in the order they closed, and the
//! index of client order ids (each entry with its original place and acceptance, which a
//! retry gets back). The closed orders enter through the XXH3-128 of their fields in that
//! order; the live orders and the client order index as multisets: the wrapping sum of every
//! entry's XXH3-128, in whatever order the slab or the maps hold them, so nothing walks a
//! level's list or sorts the index. The last timestamp is left out: it only guards that time
//! does not go backwards, and replicas that applied the same commands agree on it anyway.
//! Slab slots and hash-map layouts never enter it, so two replicas that applied the same
//! commands hash the same.

use sha2::Digest;
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::book::ladder::Ladder;
use crate::book::orders::{Order, OrderStore, NIL};
use crate::codes::{MarketState, Side};
use crate::command::NO_CLIENT_ORDER_ID;
use crate::engine::EngineParts;
use crate::instrument::Instrument;
use crate::ledger::Ledger;
use crate::limits::CLIENT_ORDER_ID_BYTES;

/// Bytes the hasher gathers before it feeds them to the digest (one `update` per field cost
/// more than the digest's own work).
const HASHER_BUFFER_BYTES: usize = 1 << 16;

struct Hasher<D: Digest> {
    digest: D,
    buffer: Vec<u8>,
}

impl<D: Digest> Hasher<D> {
    fn put(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > HASHER_BUFFER_BYTES {
            self.digest.update(&self.buffer);
            self.buffer.clear();
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn u64(&mut self, value: u64) {
        self.put(&value.to_le_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.put(value);
    }

    fn finish(mut self) -> D {
        self.digest.update(&self.buffer);
        self.digest
    }
}

/// An order's fields as the state hash takes them.
const ORDER_HASH_BYTES: usize = 8 * 6 + 16 + 8 + 4 + CLIENT_ORDER_ID_BYTES;

fn order_bytes(order: &Order) -> [u8; ORDER_HASH_BYTES] {
    let mut bytes = [0u8; ORDER_HASH_BYTES];
    let (numbers, rest) = bytes.split_at_mut(8 * 6);
    let fields =
        [order.id, order.account, order.price_ticks, order.size_lots, order.remaining_lots, order.hold_per_lot_units];
    for (field, value) in numbers.chunks_exact_mut(8).zip(fields) {
        field.copy_from_slice(&value.to_le_bytes());
    }
    let (filled, rest) = rest.split_at_mut(16);
    filled.copy_from_slice(&order.filled_price_lots.to_le_bytes());
    let (instrument, rest) = rest.split_at_mut(8);
    instrument.copy_from_slice(&u64::from(order.instrument).to_le_bytes());
    let (codes, client_order_id) = rest.split_at_mut(4);
    codes.copy_from_slice(&[order.side.code(), order.order_type.code(), order.stp.code(), order.state.code()]);
    client_order_id.copy_from_slice(&order.client_order_id);
    bytes
}

/// The wrapping sum of the XXH3-128 of every client order id entry: the same for the same
/// entries in any order, and (but with a chance of 2^-128) different for different ones.
fn client_orders_sum(orders: &OrderStore) -> u128 {
    const NUMBERS_BYTES: usize = 8 * 8;
    orders.client_orders().fold(0u128, |sum, (&(account, client_order_id), known)| {
        let mut entry = [0u8; NUMBERS_BYTES + CLIENT_ORDER_ID_BYTES + 3];
        let (numbers, rest) = entry.split_at_mut(NUMBERS_BYTES);
        let (id, codes) = rest.split_at_mut(CLIENT_ORDER_ID_BYTES);
        let fields = [
            account,
            known.order_id,
            known.seq,
            known.ts_ns as u64,
            known.price_ticks,
            known.size_lots,
            known.accepted_price_ticks,
            u64::from(known.instrument),
        ];
        for (bytes, value) in numbers.chunks_exact_mut(8).zip(fields) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
        id.copy_from_slice(&client_order_id);
        codes.copy_from_slice(&[known.side.code(), known.order_type.code(), known.stp.code()]);
        sum.wrapping_add(xxh3_128(&entry))
    })
}

/// How many live orders there are, and the wrapping sum of the XXH3-128 of each one's fields
/// and the id of the order behind it in its level (`u64::MAX` for the last). With each
/// level's first order in the digest, these pairs fix every level's time priority, and they
/// are read in one pass over the slab: walking the levels' lists instead waited on memory at
/// every order (about 0.5 µs an order in a book of 300,000).
fn live_orders_sum(orders: &OrderStore) -> (u64, u128) {
    let mut entry = [0u8; ORDER_HASH_BYTES + 8];
    orders.live_in_slab_order().fold((0, 0u128), |(count, sum), (order, behind)| {
        entry[..ORDER_HASH_BYTES].copy_from_slice(&order_bytes(order));
        entry[ORDER_HASH_BYTES..].copy_from_slice(&behind.unwrap_or(u64::MAX).to_le_bytes());
        (count + 1, sum.wrapping_add(xxh3_128(&entry)))
    })
}

/// The XXH3-128 of the retained closed orders' fields, in the order they closed: fed to the
/// SHA-256 one order at a time, the ring of 262,144 took 40-48 ms of a checkpoint's digest
/// (XXH3 reads them several times faster).
fn closed_orders_digest(orders: &OrderStore) -> u128 {
    let mut digest = Xxh3::new();
    for order in orders.closed() {
        digest.update(&order_bytes(order));
    }
    digest.digest128()
}

pub(crate) fn hash<D: Digest>(state: &EngineParts<'_>, digest: D) -> D {
    let mut h = Hasher { digest, buffer: Vec::with_capacity(HASHER_BUFFER_BYTES) };
    h.u64(state.seq);
    h.u64(state.next_order_id);
    for (asset, spec) in state.ledger.assets().iter().enumerate() {
        h.bytes(spec.name.as_bytes());
        h.u64(u64::from(spec.decimals));
        h.u64(state.ledger.deposited_units(asset as u32));
    }
    for Instrument { spec } in state.instruments {
        h.bytes(spec.symbol.as_bytes());
        for value in [
            u64::from(spec.base_asset),
            u64::from(spec.quote_asset),
            spec.lot_units,
            spec.quote_units_per_tick_lot,
            spec.min_size_lots,
        ] {
            h.u64(value);
        }
        for value in [spec.maker_fee_bps, spec.taker_fee_bps, spec.market_protection_bps] {
            h.u64(u64::from(value));
        }
    }
    let assets = state.ledger.assets().len() as u32;
    for slot in state.ledger.slots_by_account() {
        h.u64(state.ledger.account_id(slot));
        for asset in 0..assets {
            let balance = state.ledger.balance(slot, asset);
            h.u64(balance.available);
            h.u64(balance.frozen);
        }
    }
    for book in state.books {
        h.u64(u64::from(book.market.code()));
        h.u64(book.last_trade_ticks);
        for ladder in [&book.bids, &book.asks] {
            h.u64(ladder.levels_count() as u64);
            for (price_ticks, level) in ladder.levels() {
                h.u64(price_ticks);
                h.u64(level.total_lots);
                h.u64(state.orders.get(level.head).id); // an occupied level has a first order
            }
        }
    }
    let (live_count, live_sum) = live_orders_sum(state.orders);
    h.u64(live_count);
    h.put(&live_sum.to_le_bytes());
    h.put(&closed_orders_digest(state.orders).to_le_bytes());
    h.u64(state.orders.client_orders_count() as u64);
    h.put(&client_orders_sum(state.orders).to_le_bytes());
    h.finish()
}

pub(crate) fn check_invariants(state: &EngineParts<'_>) -> Result<(), String> {
    check_client_orders(state.orders)?;
    let assets = state.ledger.assets().len();
    let accounts = state.ledger.accounts_count();
    // Holds the open orders require, per account slot and asset.
    let mut required = vec![0u128; accounts * assets];
    let mut live_seen = 0usize;
    for (index, book) in state.books.iter().enumerate() {
        let instrument = &state.instruments[index];
        if book.market == MarketState::Continuous && book.is_crossed() {
            let (bid, ask) = (book.bids.best().expect("crossed"), book.asks.best().expect("crossed"));
            return Err(format!("book crossed: {} bid {bid} >= ask {ask}", instrument.spec.symbol));
        }
        for (side, ladder) in [(Side::Buy, &book.bids), (Side::Sell, &book.asks)] {
            live_seen += check_ladder(state, instrument, index as u32, side, ladder, &mut required, assets)?;
        }
    }
    if live_seen != state.live_orders {
        return Err(format!("live order count {} but {live_seen} orders rest in books", state.live_orders));
    }
    check_ledger(state.ledger, &required, assets)
}

fn check_ladder(
    state: &EngineParts<'_>,
    instrument: &Instrument,
    instrument_id: u32,
    side: Side,
    ladder: &Ladder,
    required: &mut [u128],
    assets: usize,
) -> Result<usize, String> {
    let symbol = &instrument.spec.symbol;
    let mut orders_seen = 0usize;
    let mut previous: Option<u64> = None;
    for (price_ticks, level) in ladder.levels() {
        if previous.is_some_and(|p| !ladder.better(p, price_ticks)) {
            return Err(format!("{symbol} {} levels out of order at {price_ticks}", side.name()));
        }
        previous = Some(price_ticks);
        let (mut total_lots, mut count, mut prev, mut slot) = (0u64, 0u32, NIL, level.head);
        while slot != NIL {
            let order = state.orders.get(slot);
            let wrong = if order.prev != prev {
                Some("broken prev link")
            } else if order.price_ticks != price_ticks || order.side != side || order.instrument != instrument_id {
                Some("order in the wrong level")
            } else if !order.is_live() || order.remaining_lots == 0 {
                Some("order in the book is not live")
            } else if state.orders.find_live(order.id) != Some(slot) {
                Some("order missing from the id index")
            } else {
                None
            };
            if let Some(what) = wrong {
                return Err(format!("{symbol} level {price_ticks}: {what} (order {})", order.id));
            }
            let expected_hold = match side {
                Side::Buy => instrument.buy_hold_per_lot(order.price_ticks).expect("in range"),
                Side::Sell => instrument.spec.lot_units,
            };
            if order.hold_per_lot_units != expected_hold {
                return Err(format!(
                    "order {}: hold per lot {} != {expected_hold}",
                    order.id, order.hold_per_lot_units
                ));
            }
            let asset = match side {
                Side::Buy => instrument.spec.quote_asset,
                Side::Sell => instrument.spec.base_asset,
            };
            required[order.account_slot as usize * assets + asset as usize] += u128::from(order.hold_units());
            total_lots += order.remaining_lots;
            count += 1;
            prev = slot;
            slot = order.next;
        }
        if level.tail != prev || level.count != count || level.total_lots != total_lots {
            return Err(format!("{symbol} level {price_ticks}: totals or tail disagree with its orders"));
        }
        orders_seen += count as usize;
    }
    if orders_seen != ladder.orders_count() {
        return Err(format!("{symbol} {}: order count disagrees with its levels", side.name()));
    }
    Ok(orders_seen)
}

fn check_ledger(ledger: &Ledger, required: &[u128], assets: usize) -> Result<(), String> {
    let mut totals = vec![0u128; assets];
    for slot in ledger.slots_by_account() {
        for asset in 0..assets {
            let balance = ledger.balance(slot, asset as u32);
            let hold = required[slot as usize * assets + asset];
            if u128::from(balance.frozen) != hold {
                let (account, name) = (ledger.account_id(slot), &ledger.assets()[asset].name);
                return Err(format!(
                    "frozen {name} of account {account} is {} but its open orders hold {hold}",
                    balance.frozen
                ));
            }
            totals[asset] += u128::from(balance.available) + u128::from(balance.frozen);
        }
    }
    for (asset, total) in totals.iter().enumerate() {
        let deposited = ledger.deposited_units(asset as u32);
        if *total != u128::from(deposited) {
            let name = &ledger.assets()[asset].name;
            return Err(format!("conservation of {name}: balances sum to {total} but {deposited} was deposited"));
        }
    }
    Ok(())
}

/// Every known order with a client order id is indexed under it, and every index entry
/// names a known order of that account and client order id.
fn check_client_orders(orders: &OrderStore) -> Result<(), String> {
    let live = orders.live_slots_by_id().into_iter().map(|slot| orders.get(slot));
    let mut with_client_id = 0usize;
    for order in live.chain(orders.closed()).filter(|o| o.client_order_id != NO_CLIENT_ORDER_ID) {
        with_client_id += 1;
        let indexed = orders.client_order(order.account, &order.client_order_id).map(|c| c.order_id);
        if indexed != Some(order.id) {
            return Err(format!("order {} is not indexed under its client order id", order.id));
        }
    }
    let indexed = orders.client_orders_count();
    if indexed != with_client_id {
        return Err(format!("{indexed} client order ids indexed but {with_client_id} known orders have one"));
    }
    Ok(())
}
