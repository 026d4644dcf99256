//! The engine: the deterministic state machine that owns all trading state (instruments,
//! books, orders, ledger). State changes only through `apply`, one sequenced command at a
//! time; each command gets the next sequence number and carries the sequencer's timestamp.
//! No I/O, no clock, no randomness, and no iteration over a hash map reaches state or events.

use sha2::{Digest, Sha256};

use crate::auction::{indicative, within_band, Indicative};
use crate::book::orders::{Order, OrderStore};
use crate::book::Book;
use crate::codes::{EventKind, MarketState, OrderType, Reason, Side, Stp};
use crate::command::{AmendOrder, AssetSpec, Command, InstrumentSpec, PlaceOrder};
use crate::instrument::Instrument;
use crate::ledger::{Balance, Ledger};
use crate::limits::{FEE_ACCOUNT, INSTRUMENTS_MAX, ORDERS_LIVE_MAX};
use crate::matching::Matcher;
use crate::wire::{
    CommandRecord, EventRecord, WireError, ALL_INSTRUMENTS, COMMAND_KIND_AMEND, COMMAND_KIND_CANCEL,
    COMMAND_KIND_CANCEL_ALL, COMMAND_KIND_DEPOSIT, COMMAND_KIND_PLACE, COMMAND_KIND_SET_MARKET_STATE, SIDE_NONE,
};

/// How many records ahead the batch loop prefetches an order's index entry, and the order.
const INDEX_PREFETCH_RECORDS: usize = 8;
const ORDER_PREFETCH_RECORDS: usize = 4;

/// A command the engine cannot take at all (a caller's bug, not a business rejection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    TimeWentBackwards { ts_ns: i64, last_ts_ns: i64 },
    InvalidConfig(String),
    Wire(WireError),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::TimeWentBackwards { ts_ns, last_ts_ns } => {
                write!(f, "timestamp {ts_ns} ns is before the last command's {last_ts_ns} ns")
            }
            EngineError::InvalidConfig(message) => write!(f, "invalid configuration: {message}"),
            EngineError::Wire(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<WireError> for EngineError {
    fn from(error: WireError) -> Self {
        EngineError::Wire(error)
    }
}

/// `Clone` copies the whole state (a snapshot takes one under the sequencer's lock: a copy
/// of memory is far quicker than serializing it). `clone_from` copies into the memory of an
/// engine already laid out, as far as it reaches: no allocation and no page faults there,
/// several times quicker than a fresh clone for a large state.
#[derive(Debug, Default)]
pub struct Engine {
    pub(crate) seq: u64,
    pub(crate) ts_ns: i64,
    pub(crate) next_order_id: u64,
    pub(crate) instruments: Vec<Instrument>,
    pub(crate) books: Vec<Book>,
    pub(crate) orders: OrderStore,
    pub(crate) ledger: Ledger,
    pub(crate) live_orders: usize,
}

impl Clone for Engine {
    clone_through_clone_from!(Engine);

    fn clone_from(&mut self, source: &Self) {
        // Every field named, so a new one cannot be left out of the copy.
        let Engine { seq, ts_ns, next_order_id, instruments, books, orders, ledger, live_orders } = source;
        self.seq = *seq;
        self.ts_ns = *ts_ns;
        self.next_order_id = *next_order_id;
        self.instruments.clone_from(instruments);
        self.books.clone_from(books);
        self.orders.clone_from(orders);
        self.ledger.clone_from(ledger);
        self.live_orders = *live_orders;
    }
}

impl Engine {
    pub fn new() -> Self {
        Engine { next_order_id: 1, ..Engine::default() }
    }

    /// Allocates and touches the memory of `live_orders` live orders and of the retained
    /// closed orders up front, so no later command waits on the allocator or a page fault.
    /// Changes no state (the state hash is the same before and after).
    pub fn preallocate(&mut self, live_orders: usize) {
        let template = Order {
            id: 0,
            account: 0,
            price_ticks: 0,
            size_lots: 0,
            remaining_lots: 0,
            filled_price_lots: 0,
            hold_per_lot_units: 0,
            prev: crate::book::orders::NIL,
            next: crate::book::orders::NIL,
            account_slot: 0,
            instrument: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            stp: Stp::CancelMaker,
            state: crate::codes::OrderState::Canceled,
            client_order_id: [0; crate::limits::CLIENT_ORDER_ID_BYTES],
        };
        self.orders.preallocate(live_orders.min(ORDERS_LIVE_MAX), &template);
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn ts_ns(&self) -> i64 {
        self.ts_ns
    }

    /// Whether `apply` would take this command (it fails exactly when this does).
    pub fn check(&self, ts_ns: i64, command: &Command) -> Result<(), EngineError> {
        if ts_ns < self.ts_ns {
            return Err(EngineError::TimeWentBackwards { ts_ns, last_ts_ns: self.ts_ns });
        }
        match command {
            Command::AddAsset(spec) => self.check_asset(spec),
            Command::AddInstrument(spec) => self.check_instrument(spec),
            _ => Ok(()),
        }
    }

    /// Applies one command stamped `ts_ns`, appending its events to `out`.
    pub fn apply(&mut self, ts_ns: i64, command: &Command, out: &mut Vec<EventRecord>) -> Result<(), EngineError> {
        self.check(ts_ns, command)?;
        self.seq += 1;
        self.ts_ns = ts_ns;
        match command {
            Command::AddAsset(spec) => {
                self.ledger.add_asset(spec.clone()).expect("checked above");
            }
            Command::AddInstrument(spec) => {
                self.instruments.push(Instrument::new(spec.clone()).expect("checked above"));
                self.books.push(Book::default());
            }
            Command::Deposit { account, asset, amount_units } => self.deposit(*account, *asset, *amount_units, out),
            Command::Place(place) => self.place(place, out),
            Command::Cancel { account, instrument, order_id } => self.cancel(*account, *instrument, *order_id, out),
            Command::Amend(amend) => self.amend(amend, out),
            Command::CancelAll { account, instrument } => self.cancel_all(*account, *instrument, out),
            Command::SetMarketState { instrument, state, auction_band_bps } => {
                self.set_market_state(*instrument, *state, *auction_band_bps, out)
            }
        }
        Ok(())
    }

    /// Applies a batch of records: all are checked first, so a bad record applies nothing.
    pub fn apply_records(&mut self, records: &[CommandRecord], out: &mut Vec<EventRecord>) -> Result<(), EngineError> {
        self.check_records(records)?;
        self.apply_checked_records(records, out);
        Ok(())
    }

    /// Applies records that `check_records` has accepted (with no command applied since).
    pub(crate) fn apply_checked_records(&mut self, records: &[CommandRecord], out: &mut Vec<EventRecord>) {
        for (index, record) in records.iter().enumerate() {
            self.prefetch_ahead(records, index);
            self.apply_record(record, out);
        }
    }

    /// Whether `apply_records` would take this batch (it fails exactly when this does).
    pub fn check_records(&self, records: &[CommandRecord]) -> Result<(), EngineError> {
        let mut last_ts_ns = self.ts_ns;
        for (index, record) in records.iter().enumerate() {
            record.check().map_err(|message| EngineError::Wire(WireError { index, message }))?;
            if record.ts_ns < last_ts_ns {
                let message = format!("timestamp {} ns is before {last_ts_ns} ns", record.ts_ns);
                return Err(EngineError::Wire(WireError { index, message }));
            }
            last_ts_ns = record.ts_ns;
        }
        Ok(())
    }

    /// Cache hints for the orders that cancels and amends a few records ahead will look up:
    /// their index entries first, then (once the entry is cached) the orders themselves.
    /// Without them a cancel or amend stalls on both loads (perf showed the lookup waiting).
    #[inline]
    fn prefetch_ahead(&self, records: &[CommandRecord], index: usize) {
        let names_order = |r: &&CommandRecord| matches!(r.kind, COMMAND_KIND_CANCEL | COMMAND_KIND_AMEND);
        if let Some(ahead) = records.get(index + INDEX_PREFETCH_RECORDS).filter(names_order) {
            self.orders.prefetch_index(ahead.order_id);
        }
        if let Some(ahead) = records.get(index + ORDER_PREFETCH_RECORDS).filter(names_order) {
            self.orders.prefetch_order(ahead.order_id);
        }
    }

    /// Applies one checked record without building a `Command` (the batch path's hot loop).
    fn apply_record(&mut self, r: &CommandRecord, out: &mut Vec<EventRecord>) {
        self.seq += 1;
        self.ts_ns = r.ts_ns;
        match r.kind {
            COMMAND_KIND_PLACE => {
                let place = PlaceOrder {
                    account: r.account,
                    instrument: r.instrument,
                    side: Side::from_code(r.side).expect("checked"),
                    order_type: OrderType::from_code(r.order_type).expect("checked"),
                    stp: Stp::from_code(r.stp).expect("checked"),
                    price_ticks: r.price_ticks,
                    size_lots: r.size_lots,
                    client_order_id: r.client_order_id,
                };
                self.place(&place, out);
            }
            COMMAND_KIND_CANCEL => self.cancel(r.account, r.instrument, r.order_id, out),
            COMMAND_KIND_AMEND => {
                let amend = AmendOrder {
                    account: r.account,
                    instrument: r.instrument,
                    order_id: r.order_id,
                    new_price_ticks: r.price_ticks,
                    new_size_lots: r.size_lots,
                };
                self.amend(&amend, out);
            }
            COMMAND_KIND_CANCEL_ALL => {
                let instrument = (r.instrument != ALL_INSTRUMENTS).then_some(r.instrument);
                self.cancel_all(r.account, instrument, out);
            }
            COMMAND_KIND_DEPOSIT => self.deposit(r.account, r.instrument, r.size_lots, out),
            COMMAND_KIND_SET_MARKET_STATE => {
                let state = MarketState::from_code(r.order_type).expect("checked");
                self.set_market_state(r.instrument, state, r.size_lots as u16, out);
            }
            other => unreachable!("command kind {other} passed the check"),
        }
    }

    fn place(&mut self, place: &PlaceOrder, out: &mut Vec<EventRecord>) {
        match self.matcher(place.instrument, out) {
            Some((mut matcher, next_order_id)) => matcher.place(place, next_order_id),
            None => self.reject_unknown_instrument(place.account, place.instrument, Some(place.side), out),
        }
    }

    fn cancel(&mut self, account: u64, instrument: u32, order_id: u64, out: &mut Vec<EventRecord>) {
        match self.matcher(instrument, out) {
            Some((mut matcher, _)) => matcher.cancel(account, order_id),
            None => self.reject_unknown_instrument(account, instrument, None, out),
        }
    }

    fn amend(&mut self, amend: &AmendOrder, out: &mut Vec<EventRecord>) {
        match self.matcher(amend.instrument, out) {
            Some((mut matcher, _)) => matcher.amend(amend),
            None => self.reject_unknown_instrument(amend.account, amend.instrument, None, out),
        }
    }

    fn auction_event(&mut self, instrument: u32, out: &mut Vec<EventRecord>) {
        let (mut matcher, _) = self.matcher(instrument, out).expect("known instrument");
        matcher.publish_auction();
    }

    /// Moves an instrument to `state` (see `Command::SetMarketState`).
    fn set_market_state(&mut self, instrument: u32, state: MarketState, band_bps: u16, out: &mut Vec<EventRecord>) {
        let Some(book) = self.books.get(instrument as usize) else {
            return self.reject_unknown_instrument(0, instrument, None, out);
        };
        let mut reason = Reason::None;
        if state == MarketState::Continuous {
            if let Some(at) = indicative(book) {
                if within_band(at.price_ticks, book.reference_ticks(), band_bps) {
                    let (mut matcher, _) = self.matcher(instrument, out).expect("instrument exists");
                    matcher.uncross(at);
                } else {
                    self.auction_event(instrument, out);
                    reason = Reason::AuctionPriceOutsideBand;
                }
            }
        }
        let book = &mut self.books[instrument as usize];
        if reason == Reason::None {
            book.market = state;
        }
        let event = EventRecord {
            instrument,
            order_id: u64::from(book.market.code()),
            price_ticks: book.last_trade_ticks,
            side: SIDE_NONE,
            ..self.event(EventKind::MarketState, 0, reason)
        };
        out.push(event);
        if reason == Reason::None && state == MarketState::CallAuction {
            self.auction_event(instrument, out);
        }
    }

    fn check_asset(&self, spec: &AssetSpec) -> Result<(), EngineError> {
        self.ledger.check_asset(spec).map_err(EngineError::InvalidConfig)
    }

    fn check_instrument(&self, spec: &InstrumentSpec) -> Result<(), EngineError> {
        if self.instruments.len() >= INSTRUMENTS_MAX {
            return Err(EngineError::InvalidConfig(format!("at most {INSTRUMENTS_MAX} instruments")));
        }
        if self.instrument_id(&spec.symbol).is_some() {
            return Err(EngineError::InvalidConfig(format!("instrument {} exists", spec.symbol)));
        }
        if !self.ledger.has_asset(spec.base_asset) || !self.ledger.has_asset(spec.quote_asset) {
            return Err(EngineError::InvalidConfig(format!("instrument {}: unknown asset", spec.symbol)));
        }
        Instrument::new(spec.clone()).map(|_| ()).map_err(EngineError::InvalidConfig)
    }

    fn matcher<'a>(&'a mut self, instrument: u32, out: &'a mut Vec<EventRecord>) -> Option<(Matcher<'a>, &'a mut u64)> {
        let index = instrument as usize;
        let spec = self.instruments.get(index)?;
        let matcher = Matcher {
            instrument_id: instrument,
            instrument: spec,
            book: &mut self.books[index],
            orders: &mut self.orders,
            ledger: &mut self.ledger,
            out,
            seq: self.seq,
            ts_ns: self.ts_ns,
            live_orders: &mut self.live_orders,
        };
        Some((matcher, &mut self.next_order_id))
    }

    fn event(&self, kind: EventKind, account: u64, reason: Reason) -> EventRecord {
        EventRecord { account, reason: reason.code(), ..EventRecord::new(self.seq, self.ts_ns, kind) }
    }

    fn reject_unknown_instrument(&self, account: u64, instrument: u32, side: Option<Side>, out: &mut Vec<EventRecord>) {
        let side = side.map_or(SIDE_NONE, Side::code);
        let rejected = self.event(EventKind::Rejected, account, Reason::InstrumentUnknown);
        out.push(EventRecord { side, instrument, ..rejected });
    }

    fn deposit(&mut self, account: u64, asset: u32, amount_units: u64, out: &mut Vec<EventRecord>) {
        let reason = if account == FEE_ACCOUNT {
            Reason::LedgerReservedAccount
        } else if !self.ledger.has_asset(asset) {
            Reason::LedgerUnknownAsset
        } else if !self.ledger.deposit(account, asset, amount_units) {
            Reason::LedgerAmountInvalid
        } else {
            Reason::None
        };
        let kind = if reason == Reason::None { EventKind::Deposited } else { EventKind::Rejected };
        let event = EventRecord {
            instrument: asset,
            is_asset: 1,
            side: SIDE_NONE,
            size_lots: amount_units,
            ..self.event(kind, account, reason)
        };
        out.push(event);
    }

    /// Cancels in order-id order. A halted instrument keeps its orders: one rejection per
    /// halted instrument that holds some, in instrument order; an auction's instruments
    /// publish their new indicative uncross after the cancels.
    fn cancel_all(&mut self, account: u64, instrument: Option<u32>, out: &mut Vec<EventRecord>) {
        let mut halted = Vec::new();
        let mut auctions = Vec::new();
        let selected = |order: &Order| order.account == account && instrument.is_none_or(|i| i == order.instrument);
        for slot in self.orders.live_slots_by_id_where(selected) {
            let order_instrument = self.orders.get(slot).instrument;
            match self.books[order_instrument as usize].market {
                MarketState::Halted => {
                    halted.push(order_instrument);
                    continue;
                }
                MarketState::CallAuction => auctions.push(order_instrument),
                _ => {}
            }
            let (mut matcher, _) = self.matcher(order_instrument, out).expect("live orders have instruments");
            matcher.cancel_slot(slot);
        }
        for list in [&mut halted, &mut auctions] {
            list.sort_unstable();
            list.dedup();
        }
        for instrument in halted {
            let rejected = self.event(EventKind::Rejected, account, Reason::MarketHalted);
            out.push(EventRecord { side: SIDE_NONE, instrument, ..rejected });
        }
        for instrument in auctions {
            self.auction_event(instrument, out);
        }
    }

    // ---- queries ----

    /// Every instrument's spec, by id.
    pub fn instrument_specs(&self) -> impl Iterator<Item = &InstrumentSpec> {
        self.instruments.iter().map(|i| &i.spec)
    }

    pub fn instrument_id(&self, symbol: &str) -> Option<u32> {
        self.instruments.iter().position(|i| i.spec.symbol == symbol).map(|i| i as u32)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn balance(&self, account: u64, asset: u32) -> Balance {
        self.ledger.slot(account).map(|slot| self.ledger.balance(slot, asset)).unwrap_or_default()
    }

    pub fn book(&self, instrument: u32) -> Option<&Book> {
        self.books.get(instrument as usize)
    }

    pub fn market_state(&self, instrument: u32) -> Option<MarketState> {
        self.book(instrument).map(|book| book.market)
    }

    /// The uncross the instrument's book would have now (`None` inside the option: nothing
    /// would execute); `None` for an unknown instrument.
    pub fn auction(&self, instrument: u32) -> Option<Option<Indicative>> {
        self.book(instrument).map(indicative)
    }

    /// An order this account owns, live or recently closed.
    pub fn order(&self, account: u64, order_id: u64) -> Option<&Order> {
        self.orders.find(order_id).filter(|order| order.account == account)
    }

    /// The original `accepted` event when `place` repeats, field for field, the place of a
    /// known order of the same account and client order id: a retry, to be answered with
    /// that outcome instead of being applied (applied, it would be rejected as
    /// `order_client_order_id_in_use`). None for a new client order id or none at all.
    pub fn place_retry(&self, place: &PlaceOrder) -> Option<EventRecord> {
        if place.client_order_id == crate::command::NO_CLIENT_ORDER_ID {
            return None;
        }
        let known = self.orders.client_order(place.account, &place.client_order_id)?;
        (known.place(place.account, place.client_order_id) == *place).then(|| known.accepted(place.account))
    }

    pub fn live_orders(&self) -> usize {
        self.live_orders
    }

    pub(crate) fn parts(&self) -> EngineParts<'_> {
        EngineParts {
            seq: self.seq,
            next_order_id: self.next_order_id,
            instruments: &self.instruments,
            books: &self.books,
            orders: &self.orders,
            ledger: &self.ledger,
            live_orders: self.live_orders,
        }
    }

    /// SHA-256 of the canonical state (see `state.rs`), as hex.
    pub fn state_hash(&self) -> String {
        crate::codec::hex(&self.state_digest())
    }

    /// SHA-256 of the canonical state (see `state.rs`).
    pub fn state_digest(&self) -> [u8; 32] {
        crate::state::hash(&self.parts(), Sha256::new()).finalize().into()
    }

    /// Checks every invariant of books and ledger; the error names the broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::state::check_invariants(&self.parts())
    }
}

/// A read-only view of all engine state, for hashing and invariant checks.
pub(crate) struct EngineParts<'a> {
    pub seq: u64,
    pub next_order_id: u64,
    pub instruments: &'a [Instrument],
    pub books: &'a [Book],
    pub orders: &'a OrderStore,
    pub ledger: &'a Ledger,
    pub live_orders: usize,
}
