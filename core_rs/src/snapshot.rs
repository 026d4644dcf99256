//! A snapshot body: the engine's full state as bytes, and the engine rebuilt from them.
//!
//! The body holds what the state hash covers (see `state.rs`) plus the last timestamp, in
//! the same canonical order: counters, the ledger (accounts in slot order), instruments,
//! every book's market state, last trade price and orders in priority order, the retained
//! closed orders oldest first, and the client order index. Restoring re-inserts orders in that order, so the rebuilt engine has
//! the same state hash and answers every later command exactly as the original would.
//! Slab slots and hash-map layouts are rebuilt, never copied. Integrity (CRC, atomic write)
//! is the snapshot store's job; this format only refuses bodies it cannot read whole.

use crate::book::orders::{ClientOrder, Order, NIL};
use crate::book::Book;
use crate::codec::{Reader, Writer};
use crate::codes::{MarketState, OrderState, OrderType, Side, Stp};
use crate::command::{ClientOrderId, NO_CLIENT_ORDER_ID};
use crate::engine::Engine;
use crate::instrument::Instrument;
use crate::ledger::Ledger;
use crate::limits::{CLIENT_ORDER_ID_BYTES, INSTRUMENTS_MAX, ORDERS_CLOSED_RETAINED_MAX, ORDERS_LIVE_MAX};
use crate::wire::{decode_instrument, encode_instrument};

/// Version of the body layout; a body of another version is refused (2: compact client
/// order entries; 3: each book's market state and last trade price).
const SNAPSHOT_FORMAT: u32 = 3;

fn code<T>(value: u8, what: &str, parse: fn(u8) -> Option<T>) -> Result<T, String> {
    parse(value).ok_or_else(|| format!("unknown {what} code {value}"))
}

/// What `encode_order` writes.
const ENCODED_ORDER_BYTES: usize = 5 * 8 + 16 + 8 + 4 + 4 + CLIENT_ORDER_ID_BYTES;

fn encode_order(w: &mut Writer, order: &Order) {
    for value in [order.id, order.account, order.price_ticks, order.size_lots, order.remaining_lots] {
        w.u64(value);
    }
    w.u128(order.filled_price_lots);
    w.u64(order.hold_per_lot_units);
    w.u32(order.instrument);
    for code in [order.side.code(), order.order_type.code(), order.stp.code(), order.state.code()] {
        w.u8(code);
    }
    w.raw(&order.client_order_id);
}

fn decode_order(r: &mut Reader<'_>, ledger: &Ledger) -> Result<Order, String> {
    let (id, account, price_ticks, size_lots, remaining_lots) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let (filled_price_lots, hold_per_lot_units, instrument) = (r.u128()?, r.u64()?, r.u32()?);
    let order = Order {
        id,
        account,
        price_ticks,
        size_lots,
        remaining_lots,
        filled_price_lots,
        hold_per_lot_units,
        prev: NIL,
        next: NIL,
        account_slot: ledger.slot(account).ok_or_else(|| format!("order {id}: account {account} has no balances"))?,
        instrument,
        side: code(r.u8()?, "side", Side::from_code)?,
        order_type: code(r.u8()?, "order type", OrderType::from_code)?,
        stp: code(r.u8()?, "stp", Stp::from_code)?,
        state: code(r.u8()?, "order state", OrderState::from_code)?,
        client_order_id: r.fixed()?,
    };
    if remaining_lots > size_lots {
        return Err(format!("order {id}: remaining {remaining_lots} > size {size_lots}"));
    }
    Ok(order)
}

/// What `encode_client_order` writes.
const ENCODED_CLIENT_ORDER_BYTES: usize = 8 + CLIENT_ORDER_ID_BYTES + 6 * 8 + 4 + 3;

fn encode_client_order(w: &mut Writer, (account, client_order_id): (u64, ClientOrderId), known: &ClientOrder) {
    w.u64(account);
    w.raw(&client_order_id);
    for value in [known.order_id, known.seq, known.ts_ns as u64, known.price_ticks, known.size_lots] {
        w.u64(value);
    }
    w.u64(known.accepted_price_ticks);
    w.u32(known.instrument);
    for code in [known.side.code(), known.order_type.code(), known.stp.code()] {
        w.u8(code);
    }
}

fn decode_client_order(r: &mut Reader<'_>) -> Result<((u64, ClientOrderId), ClientOrder), String> {
    let key = (r.u64()?, r.fixed()?);
    let known = ClientOrder {
        order_id: r.u64()?,
        seq: r.u64()?,
        ts_ns: r.i64()?,
        price_ticks: r.u64()?,
        size_lots: r.u64()?,
        accepted_price_ticks: r.u64()?,
        instrument: r.u32()?,
        side: code(r.u8()?, "side", Side::from_code)?,
        order_type: code(r.u8()?, "order type", OrderType::from_code)?,
        stp: code(r.u8()?, "stp", Stp::from_code)?,
    };
    Ok((key, known))
}

impl Engine {
    /// The snapshot body of the current state.
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_after(Vec::new())
    }

    /// `head` followed by the snapshot body of the current state, in the one buffer (a
    /// replica's snapshot file puts its own header first: no copy of the body behind it).
    pub fn snapshot_after(&self, head: Vec<u8>) -> Vec<u8> {
        let mut w = Writer { bytes: head };
        w.u32(SNAPSHOT_FORMAT);
        w.u64(self.seq);
        w.i64(self.ts_ns);
        w.u64(self.next_order_id);
        self.ledger.encode(&mut w);
        w.u32(self.instruments.len() as u32);
        for instrument in &self.instruments {
            encode_instrument(&mut w, &instrument.spec);
        }
        // The rest, reserved exactly (a test checks) before it is written: a buffer that grows
        // copies all it holds inside the allocator's lock, and the sequencer, which allocates
        // too, waited for each copy; at 1 M commands/s with a snapshot a second that was an
        // 11 ms stall of order entry per snapshot.
        let live_orders: usize =
            self.books.iter().map(|book| book.bids.orders_count() + book.asks.orders_count()).sum();
        let client_orders = self.orders.client_orders_sorted();
        w.bytes.reserve_exact(
            self.books.len() * (1 + 8 + 2 * 8)
                + (live_orders + self.orders.closed_count()) * ENCODED_ORDER_BYTES
                + 2 * 8
                + client_orders.len() * ENCODED_CLIENT_ORDER_BYTES,
        );
        for book in &self.books {
            w.u8(book.market.code());
            w.u64(book.last_trade_ticks);
            for ladder in [&book.bids, &book.asks] {
                w.u64(ladder.orders_count() as u64);
                for (_, level) in ladder.levels() {
                    let mut slot = level.head;
                    while slot != NIL {
                        let order = self.orders.get(slot);
                        encode_order(&mut w, order);
                        slot = order.next;
                    }
                }
            }
        }
        w.u64(self.orders.closed_count() as u64);
        for order in self.orders.closed() {
            encode_order(&mut w, order);
        }
        w.u64(client_orders.len() as u64);
        for (&key, known) in client_orders {
            encode_client_order(&mut w, key, known);
        }
        w.bytes
    }

    /// The engine a snapshot body describes; an error names what is wrong with the body.
    pub fn restore(body: &[u8]) -> Result<Engine, String> {
        let r = &mut Reader::new(body);
        let format = r.u32()?;
        if format != SNAPSHOT_FORMAT {
            return Err(format!("snapshot format {format}, expected {SNAPSHOT_FORMAT}"));
        }
        let mut engine = Engine::new();
        (engine.seq, engine.ts_ns, engine.next_order_id) = (r.u64()?, r.i64()?, r.u64()?);
        engine.ledger = Ledger::decode(r)?;
        let instruments = r.u32()? as usize;
        if instruments > INSTRUMENTS_MAX {
            return Err(format!("{instruments} instruments"));
        }
        for _ in 0..instruments {
            engine.instruments.push(Instrument::new(decode_instrument(r)?)?);
            engine.books.push(Book::default());
        }
        for index in 0..instruments {
            engine.books[index].market = code(r.u8()?, "market state", MarketState::from_code)?;
            engine.books[index].last_trade_ticks = r.u64()?;
            for side in [Side::Buy, Side::Sell] {
                let count = r.u64()?;
                if engine.live_orders as u64 + count > ORDERS_LIVE_MAX as u64 {
                    return Err(format!("more than {ORDERS_LIVE_MAX} live orders"));
                }
                for _ in 0..count {
                    let order = decode_order(r, &engine.ledger)?;
                    if order.instrument as usize != index || order.side != side || !order.is_live() {
                        return Err(format!("order {} is not a live {} of instrument {index}", order.id, side.name()));
                    }
                    if engine.orders.find(order.id).is_some() {
                        return Err(format!("order {} appears twice", order.id));
                    }
                    let slot = engine.orders.insert(order);
                    engine.books[index].side_mut(side).push_back(&mut engine.orders, slot);
                    engine.live_orders += 1;
                }
            }
        }
        let closed = r.u64()?;
        if closed > ORDERS_CLOSED_RETAINED_MAX as u64 {
            return Err(format!("{closed} closed orders"));
        }
        for _ in 0..closed {
            let order = decode_order(r, &engine.ledger)?;
            if order.is_live() || engine.orders.find(order.id).is_some() {
                return Err(format!("closed order {} is live or appears twice", order.id));
            }
            engine.orders.restore_closed(order);
        }
        for _ in 0..r.u64()? {
            let ((account, client_order_id), known) = decode_client_order(r)?;
            if client_order_id == NO_CLIENT_ORDER_ID || engine.orders.client_order(account, &client_order_id).is_some()
            {
                return Err(format!("client order of order {} is blank or appears twice", known.order_id));
            }
            engine.orders.remember_client_order(account, client_order_id, known);
        }
        r.finish()?;
        engine.check_invariants().map_err(|broken| format!("restored state is inconsistent: {broken}"))?;
        Ok(engine)
    }
}
