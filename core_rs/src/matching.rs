//! Matching: the rules of `SEMANTICS.md` for one instrument's book — checks, holds, strict
//! price-time priority, self-trade prevention, settlement of fills, and the fate of
//! remainders. Every path that changes state emits the events that describe it; a rejected
//! command changes nothing.
//!
//! A `Matcher` borrows the parts of the engine one command needs: the instrument, its book,
//! the order store and the ledger.

use crate::auction::{indicative, Indicative};
use crate::book::orders::{ClientOrder, Order, OrderSlot, OrderStore, NIL};
use crate::book::Book;
use crate::codes::{EventKind, MarketState, OrderState, OrderType, Reason, Side, Stp};
use crate::command::{AmendOrder, PlaceOrder, NO_CLIENT_ORDER_ID};
use crate::instrument::{fee_units, Instrument};
use crate::ledger::{AccountSlot, Ledger, FEE_ACCOUNT_SLOT};
use crate::limits::{FEE_ACCOUNT, ORDERS_LIVE_MAX, PRICE_TICKS_MAX, SIZE_LOTS_MAX};
use crate::wire::{EventRecord, SIDE_NONE};

#[derive(Debug)]
pub struct Matcher<'a> {
    pub instrument_id: u32,
    pub instrument: &'a Instrument,
    pub book: &'a mut Book,
    pub orders: &'a mut OrderStore,
    pub ledger: &'a mut Ledger,
    pub out: &'a mut Vec<EventRecord>,
    pub seq: u64,
    pub ts_ns: i64,
    pub live_orders: &'a mut usize,
}

/// The terms of a taker that passed its checks, before it gets an id.
struct Admitted {
    limit_ticks: u64,
    hold_per_lot_units: u64,
    account_slot: AccountSlot,
}

impl Matcher<'_> {
    fn event(&self, kind: EventKind) -> EventRecord {
        EventRecord { instrument: self.instrument_id, ..EventRecord::new(self.seq, self.ts_ns, kind) }
    }

    fn order_event(&self, kind: EventKind, order: &Order, size_lots: u64, reason: Reason) -> EventRecord {
        EventRecord {
            order_id: order.id,
            account: order.account,
            price_ticks: order.price_ticks,
            size_lots,
            side: order.side.code(),
            reason: reason.code(),
            ..self.event(kind)
        }
    }

    #[cold]
    fn reject(&mut self, account: u64, order_id: u64, side: Option<Side>, reason: Reason) {
        let event = EventRecord {
            account,
            order_id,
            side: side.map_or(SIDE_NONE, Side::code),
            reason: reason.code(),
            ..self.event(EventKind::Rejected)
        };
        self.out.push(event);
    }

    fn base_asset(&self) -> u32 {
        self.instrument.spec.base_asset
    }

    fn quote_asset(&self) -> u32 {
        self.instrument.spec.quote_asset
    }

    fn hold_asset(&self, side: Side) -> u32 {
        match side {
            Side::Buy => self.quote_asset(),
            Side::Sell => self.base_asset(),
        }
    }

    /// Minor units one lot holds at `limit_ticks`; `None` if a buy's hold per lot passes `u64`.
    fn hold_per_lot(&self, side: Side, limit_ticks: u64) -> Result<u64, Reason> {
        match side {
            Side::Buy => self.instrument.buy_hold_per_lot(limit_ticks).ok_or(Reason::InstrumentPriceInvalid),
            Side::Sell => Ok(self.instrument.spec.lot_units),
        }
    }

    fn size_valid(&self, size_lots: u64) -> bool {
        (self.instrument.spec.min_size_lots..=SIZE_LOTS_MAX).contains(&size_lots)
    }

    pub fn place(&mut self, cmd: &PlaceOrder, next_order_id: &mut u64) {
        if self.book.market != MarketState::Continuous {
            return self.place_outside_continuous(cmd, next_order_id);
        }
        self.place_checked(cmd, next_order_id);
    }

    /// A place while the market is not in continuous trading: refused unless the state takes
    /// the type; during the call, followed by the new indicative uncross.
    #[cold]
    #[inline(never)]
    fn place_outside_continuous(&mut self, cmd: &PlaceOrder, next_order_id: &mut u64) {
        if let Err(reason) = self.market_allows(cmd.order_type) {
            return self.reject(cmd.account, 0, Some(cmd.side), reason);
        }
        let first_event = self.out.len();
        self.place_checked(cmd, next_order_id);
        self.publish_auction_change(first_event);
    }

    /// During a call auction, a command that changed the book (an event since `first_event`
    /// other than a rejection) is followed by the new indicative uncross.
    fn publish_auction_change(&mut self, first_event: usize) {
        let changed = self.out[first_event..].iter().any(|e| e.kind != EventKind::Rejected.code());
        if self.book.market == MarketState::CallAuction && changed {
            self.publish_auction();
        }
    }

    /// An `auction` event: the indicative uncross of the book now.
    pub fn publish_auction(&mut self) {
        let event = EventRecord { side: SIDE_NONE, ..self.event(EventKind::Auction) };
        let event = match indicative(self.book) {
            Some(at) => EventRecord {
                price_ticks: at.price_ticks,
                size_lots: at.volume_lots,
                order_id: at.imbalance_lots,
                side: at.surplus.map_or(SIDE_NONE, Side::code),
                ..event
            },
            None => event,
        };
        self.out.push(event);
    }

    #[inline]
    fn place_checked(&mut self, cmd: &PlaceOrder, next_order_id: &mut u64) {
        let admitted = match self.admit(cmd) {
            Ok(admitted) => admitted,
            Err(reason) => return self.reject(cmd.account, 0, Some(cmd.side), reason),
        };
        let order_id = *next_order_id;
        *next_order_id += 1;
        let slot = self.orders.insert(Order {
            id: order_id,
            account: cmd.account,
            price_ticks: admitted.limit_ticks,
            size_lots: cmd.size_lots,
            remaining_lots: cmd.size_lots,
            filled_price_lots: 0,
            hold_per_lot_units: admitted.hold_per_lot_units,
            prev: NIL,
            next: NIL,
            account_slot: admitted.account_slot,
            instrument: self.instrument_id,
            side: cmd.side,
            order_type: cmd.order_type,
            stp: cmd.stp,
            state: OrderState::Live,
            client_order_id: cmd.client_order_id,
        });
        let accepted = self.order_event(EventKind::Accepted, self.orders.get(slot), cmd.size_lots, Reason::None);
        self.out.push(accepted);
        if cmd.client_order_id != NO_CLIENT_ORDER_ID {
            let known = ClientOrder::new(cmd, &accepted);
            debug_assert_eq!(known.accepted(cmd.account), accepted, "the compact entry restores the event");
            self.orders.remember_client_order(cmd.account, cmd.client_order_id, known);
        }
        if self.book.market == MarketState::CallAuction {
            return self.rest_in_auction(slot);
        }
        if cmd.order_type == OrderType::Fok && !self.fok_fillable(slot) {
            return self.end_taker(slot, Reason::MatchingFokNotFillable);
        }
        self.take(slot);
    }

    /// Whether the market state takes a new order of this type: continuous takes every
    /// type, pre-open only post-only orders, the call auction limit and post-only orders.
    fn market_allows(&self, order_type: OrderType) -> Result<(), Reason> {
        let allowed = match self.book.market {
            MarketState::Continuous => true,
            MarketState::Halted | MarketState::CancelOnly => false,
            MarketState::PreOpen => order_type == OrderType::PostOnly,
            MarketState::CallAuction => order_type.rests(),
        };
        allowed.then_some(()).ok_or(self.book.market.forbids())
    }

    /// Rests an order in the call auction's book without matching. Resting orders of the
    /// same account that it crosses would trade with it at the uncross, so self-trade
    /// prevention runs now, by the new order's mode, over all of them. (Amends, which could
    /// move an order across another, are refused during the call.)
    fn rest_in_auction(&mut self, slot: OrderSlot) {
        let order = self.orders.get(slot);
        let (side, limit_ticks, account, stp) = (order.side, order.price_ticks, order.account, order.stp);
        if stp != Stp::None {
            let own_crossed = self.own_orders_crossed(side, limit_ticks, account);
            if !own_crossed.is_empty() {
                if matches!(stp, Stp::CancelMaker | Stp::CancelBoth) {
                    for maker in own_crossed {
                        self.end_maker(maker, Reason::MatchingSelfTradePrevented);
                    }
                }
                if matches!(stp, Stp::CancelTaker | Stp::CancelBoth) {
                    return self.end_taker(slot, Reason::MatchingSelfTradePrevented);
                }
            }
        }
        self.book.side_mut(side).push_back(self.orders, slot);
        *self.live_orders += 1;
    }

    /// The resting orders of `account` on the side opposite `side` that `limit_ticks` crosses.
    fn own_orders_crossed(&self, side: Side, limit_ticks: u64, account: u64) -> Vec<OrderSlot> {
        let mut own = Vec::new();
        for (price_ticks, level) in self.book.side(side.opposite()).levels() {
            if !crosses_price(side, limit_ticks, price_ticks) {
                break;
            }
            let mut slot = level.head;
            while slot != NIL {
                let order = self.orders.get(slot);
                if order.account == account {
                    own.push(slot);
                }
                slot = order.next;
            }
        }
        own
    }

    /// Executes the call auction's uncross at `at`: the best bids and asks trade at one price
    /// in priority order until `at.volume_lots` have traded. Both sides pay the maker fee;
    /// each fill names the later order as its taker. One `uncross` event prints the auction.
    pub fn uncross(&mut self, at: Indicative) {
        let mut left_lots = at.volume_lots;
        while left_lots > 0 {
            let bid = self.book.bids.head(self.book.bids.best().expect("bids left to trade"));
            let ask = self.book.asks.head(self.book.asks.best().expect("asks left to trade"));
            let lots = left_lots.min(self.orders.get(bid).remaining_lots).min(self.orders.get(ask).remaining_lots);
            let (later, earlier) =
                if self.orders.get(bid).id > self.orders.get(ask).id { (bid, ask) } else { (ask, bid) };
            let maker_bps = self.instrument.spec.maker_fee_bps;
            self.settle_fill(later, earlier, at.price_ticks, lots, maker_bps);
            self.fill_resting(later, at.price_ticks, lots);
            self.fill_resting(earlier, at.price_ticks, lots);
            left_lots -= lots;
        }
        let print = EventRecord {
            price_ticks: at.price_ticks,
            size_lots: at.volume_lots,
            side: at.surplus.map_or(SIDE_NONE, Side::code),
            ..self.event(EventKind::Uncross)
        };
        self.out.push(print);
    }

    /// The checks of a place, in the documented order; on success the hold is frozen.
    fn admit(&mut self, cmd: &PlaceOrder) -> Result<Admitted, Reason> {
        if cmd.account == FEE_ACCOUNT {
            return Err(Reason::LedgerReservedAccount);
        }
        if cmd.client_order_id != NO_CLIENT_ORDER_ID
            && self.orders.client_order(cmd.account, &cmd.client_order_id).is_some()
        {
            return Err(Reason::OrderClientOrderIdInUse);
        }
        if !self.size_valid(cmd.size_lots) {
            return Err(Reason::InstrumentSizeInvalid);
        }
        let limit_ticks = if cmd.order_type == OrderType::Market {
            let opposite_best = self.book.side(cmd.side.opposite()).best().ok_or(Reason::MatchingNoLiquidity)?;
            self.instrument.market_bound_ticks(cmd.side == Side::Buy, opposite_best)
        } else if (1..=PRICE_TICKS_MAX).contains(&cmd.price_ticks) {
            cmd.price_ticks
        } else {
            return Err(Reason::InstrumentPriceInvalid);
        };
        if cmd.order_type == OrderType::PostOnly && self.book.crosses(cmd.side, limit_ticks) {
            return Err(Reason::MatchingPostOnlyWouldCross);
        }
        if *self.live_orders >= ORDERS_LIVE_MAX {
            return Err(Reason::MatchingBookFull);
        }
        let hold_per_lot_units = self.hold_per_lot(cmd.side, limit_ticks)?;
        let account_slot = self.ledger.slot(cmd.account).ok_or(Reason::LedgerInsufficientFunds)?;
        let hold_units = hold_per_lot_units.checked_mul(cmd.size_lots).ok_or(Reason::LedgerInsufficientFunds)?;
        if !self.ledger.freeze(account_slot, self.hold_asset(cmd.side), hold_units) {
            return Err(Reason::LedgerInsufficientFunds);
        }
        Ok(Admitted { limit_ticks, hold_per_lot_units, account_slot })
    }

    /// Whether a FOK taker can fill entirely, walking the crossing makers without side effects.
    fn fok_fillable(&self, taker: OrderSlot) -> bool {
        let taker = self.orders.get(taker);
        let makers = self.book.side(taker.side.opposite());
        let mut needed_lots = taker.remaining_lots;
        for (price_ticks, level) in makers.levels() {
            if !crosses_price(taker.side, taker.price_ticks, price_ticks) {
                return false;
            }
            let mut slot = level.head;
            while slot != NIL {
                let maker = self.orders.get(slot);
                if maker.account != taker.account || taker.stp == Stp::None {
                    if maker.remaining_lots >= needed_lots {
                        return true;
                    }
                    needed_lots -= maker.remaining_lots;
                } else if taker.stp != Stp::CancelMaker {
                    return false;
                }
                slot = maker.next;
            }
        }
        false
    }

    /// Matches a taker against the book, then rests or expires what is left of it.
    fn take(&mut self, taker: OrderSlot) {
        let side = self.orders.get(taker).side;
        let makers_side = side.opposite();
        while self.orders.get(taker).remaining_lots > 0 {
            let Some(best) = self.book.side(makers_side).best() else { break };
            let (limit, account, stp) = {
                let t = self.orders.get(taker);
                (t.price_ticks, t.account, t.stp)
            };
            if !crosses_price(side, limit, best) {
                break;
            }
            let maker = self.book.side(makers_side).head(best);
            if self.orders.get(maker).account == account && stp != Stp::None {
                match stp {
                    Stp::CancelMaker => self.end_maker(maker, Reason::MatchingSelfTradePrevented),
                    Stp::CancelTaker => return self.end_taker(taker, Reason::MatchingSelfTradePrevented),
                    Stp::CancelBoth | Stp::None => {
                        self.end_maker(maker, Reason::MatchingSelfTradePrevented);
                        return self.end_taker(taker, Reason::MatchingSelfTradePrevented);
                    }
                }
                continue;
            }
            self.fill(taker, maker, best);
        }
        let order = self.orders.get(taker);
        if order.remaining_lots == 0 {
            self.orders.close(taker);
        } else if order.order_type.rests() {
            self.book.side_mut(side).push_back(self.orders, taker);
            *self.live_orders += 1;
        } else {
            self.end_taker(taker, Reason::MatchingImmediateRemainder);
        }
    }

    /// One fill of `min(taker, maker)` at the maker's price, settled in the same step.
    // Out of line: most commands never fill, and inlining this into `take` made every call
    // of `take` pay for saving the registers it needs.
    #[inline(never)]
    fn fill(&mut self, taker: OrderSlot, maker: OrderSlot, price_ticks: u64) {
        let size_lots = self.orders.get(taker).remaining_lots.min(self.orders.get(maker).remaining_lots);
        self.settle_fill(taker, maker, price_ticks, size_lots, self.instrument.spec.taker_fee_bps);
        record_fill(self.orders.get_mut(taker), price_ticks, size_lots);
        self.fill_resting(maker, price_ticks, size_lots);
    }

    /// Settles a fill of `size_lots` at `price_ticks` (the taker pays `taker_fee_bps`, the
    /// maker the maker fee) and reports it; the orders' own sizes are the caller's to update.
    #[inline(always)]
    fn settle_fill(
        &mut self,
        taker: OrderSlot,
        maker: OrderSlot,
        price_ticks: u64,
        size_lots: u64,
        taker_fee_bps: u16,
    ) {
        let spec = &self.instrument.spec;
        let (t, m) = (self.orders.get(taker), self.orders.get(maker));
        let notional = self.instrument.notional_units(price_ticks, size_lots);
        let taker_fee = fee_units(notional, taker_fee_bps) as u64;
        let maker_fee = fee_units(notional, spec.maker_fee_bps) as u64;
        let notional = notional as u64;
        let (buyer, seller, buyer_fee, seller_fee) = match t.side {
            Side::Buy => (t, m, taker_fee, maker_fee),
            Side::Sell => (m, t, maker_fee, taker_fee),
        };
        let (buyer_slot, buyer_hold) = (buyer.account_slot, size_lots * buyer.hold_per_lot_units);
        let seller_slot = seller.account_slot;
        let base_units = size_lots * spec.lot_units;
        let (base, quote) = (spec.base_asset, spec.quote_asset);
        let buyer_cost = notional + buyer_fee;
        self.ledger.spend_frozen(buyer_slot, quote, buyer_cost);
        self.ledger.release(buyer_slot, quote, buyer_hold - buyer_cost);
        self.ledger.credit(buyer_slot, base, base_units);
        self.ledger.spend_frozen(seller_slot, base, base_units);
        self.ledger.credit(seller_slot, quote, notional - seller_fee);
        self.ledger.credit(FEE_ACCOUNT_SLOT, quote, taker_fee + maker_fee);

        let event = EventRecord {
            order_id: t.id,
            account: t.account,
            maker_order_id: m.id,
            maker_account: m.account,
            price_ticks,
            size_lots,
            taker_fee,
            maker_fee,
            side: t.side.code(),
            ..self.event(EventKind::Fill)
        };
        self.out.push(event);
        self.book.last_trade_ticks = price_ticks;
    }

    /// Records a fill at `price_ticks` of a resting order: it leaves the book when filled, else
    /// its level (at its own limit, which an auction fill may better) shrinks.
    #[inline(always)]
    fn fill_resting(&mut self, slot: OrderSlot, price_ticks: u64, size_lots: u64) {
        let (side, level_ticks) = (self.orders.get(slot).side, self.orders.get(slot).price_ticks);
        if self.orders.get(slot).remaining_lots == size_lots {
            self.book.side_mut(side).remove(self.orders, slot);
            *self.live_orders -= 1;
            record_fill(self.orders.get_mut(slot), price_ticks, size_lots);
            self.orders.close(slot);
        } else {
            self.book.side_mut(side).reduce(level_ticks, size_lots);
            record_fill(self.orders.get_mut(slot), price_ticks, size_lots);
        }
    }

    /// Takes a resting order out of the book and ends it (cancel, self-trade prevention).
    fn end_maker(&mut self, maker: OrderSlot, reason: Reason) {
        let side = self.orders.get(maker).side;
        self.book.side_mut(side).remove(self.orders, maker);
        *self.live_orders -= 1;
        let kind = if reason == Reason::None { EventKind::Canceled } else { EventKind::Expired };
        self.end(maker, kind, reason);
    }

    /// Ends a taker that is not in the book.
    fn end_taker(&mut self, taker: OrderSlot, reason: Reason) {
        self.end(taker, EventKind::Expired, reason);
    }

    #[inline(never)]
    fn end(&mut self, slot: OrderSlot, kind: EventKind, reason: Reason) {
        let order = self.orders.get(slot);
        let event = self.order_event(kind, order, order.remaining_lots, reason);
        self.out.push(event);
        self.ledger.release(order.account_slot, self.hold_asset(order.side), order.hold_units());
        let order = self.orders.get_mut(slot);
        order.state = OrderState::Canceled;
        self.orders.close(slot);
    }

    /// The live order `order_id` of this account and instrument.
    #[inline]
    fn own_live_order(&self, account: u64, order_id: u64) -> Option<OrderSlot> {
        let slot = self.orders.find_live(order_id)?;
        let order = self.orders.get(slot);
        (order.is_live() && order.account == account && order.instrument == self.instrument_id).then_some(slot)
    }

    pub fn cancel(&mut self, account: u64, order_id: u64) {
        if self.book.market != MarketState::Continuous {
            return self.cancel_outside_continuous(account, order_id);
        }
        self.cancel_checked(account, order_id);
    }

    #[cold]
    #[inline(never)]
    fn cancel_outside_continuous(&mut self, account: u64, order_id: u64) {
        if self.book.market == MarketState::Halted {
            return self.reject(account, order_id, None, Reason::MarketHalted);
        }
        let first_event = self.out.len();
        self.cancel_checked(account, order_id);
        self.publish_auction_change(first_event);
    }

    #[inline]
    fn cancel_checked(&mut self, account: u64, order_id: u64) {
        match self.own_live_order(account, order_id) {
            Some(slot) => self.end_maker(slot, Reason::None),
            None => self.reject(account, order_id, None, Reason::MatchingUnknownOrder),
        }
    }

    /// Cancels a live order known to belong to this instrument (cancel-all).
    pub fn cancel_slot(&mut self, slot: OrderSlot) {
        self.end_maker(slot, Reason::None);
    }

    pub fn amend(&mut self, cmd: &AmendOrder) {
        if self.book.market != MarketState::Continuous && self.book.market != MarketState::PreOpen {
            return self.reject(cmd.account, cmd.order_id, None, self.book.market.forbids());
        }
        let Some(slot) = self.own_live_order(cmd.account, cmd.order_id) else {
            return self.reject(cmd.account, cmd.order_id, None, Reason::MatchingUnknownOrder);
        };
        if let Err(reason) = self.admit_amend(slot, cmd) {
            // A refused amend leaves the order as it was: its side is still the order's.
            let side = self.orders.get(slot).side;
            self.reject(cmd.account, cmd.order_id, Some(side), reason);
        }
    }

    /// Checks an amend, adjusts the hold, and applies it in place or by re-entry.
    fn admit_amend(&mut self, slot: OrderSlot, cmd: &AmendOrder) -> Result<(), Reason> {
        if cmd.new_price_ticks == 0 && cmd.new_size_lots == 0 {
            return Err(Reason::MatchingAmendNoChange);
        }
        let order = self.orders.get(slot);
        let price_ticks = if cmd.new_price_ticks == 0 { order.price_ticks } else { cmd.new_price_ticks };
        let size_lots = if cmd.new_size_lots == 0 { order.size_lots } else { cmd.new_size_lots };
        if price_ticks > PRICE_TICKS_MAX {
            return Err(Reason::InstrumentPriceInvalid);
        }
        if !self.size_valid(size_lots) {
            return Err(Reason::InstrumentSizeInvalid);
        }
        if size_lots <= order.filled_lots() {
            return Err(Reason::MatchingAmendSizeNotAboveFilled);
        }
        if order.order_type == OrderType::PostOnly && self.book.crosses(order.side, price_ticks) {
            return Err(Reason::MatchingPostOnlyWouldCross);
        }
        let keeps_priority = price_ticks == order.price_ticks && size_lots <= order.size_lots;
        let trades = !keeps_priority && self.book.crosses(order.side, price_ticks);
        if trades && self.book.market == MarketState::PreOpen {
            return Err(Reason::MarketPreOpen);
        }
        let remaining_lots = size_lots - order.filled_lots();
        let hold_per_lot_units = self.hold_per_lot(order.side, price_ticks)?;
        let old_hold = order.hold_units();
        let new_hold = hold_per_lot_units.checked_mul(remaining_lots).ok_or(Reason::LedgerInsufficientFunds)?;
        let (account_slot, asset) = (order.account_slot, self.hold_asset(order.side));
        if new_hold > old_hold && !self.ledger.freeze(account_slot, asset, new_hold - old_hold) {
            return Err(Reason::LedgerInsufficientFunds);
        }
        if new_hold < old_hold {
            self.ledger.release(account_slot, asset, old_hold - new_hold);
        }
        let side = order.side;
        // A move that cannot trade re-enters as a taker that rests at once: it only changes
        // level, so it skips matching.
        if keeps_priority {
            self.book.side_mut(side).reduce(price_ticks, order.remaining_lots - remaining_lots);
        } else if trades {
            self.book.side_mut(side).remove(self.orders, slot);
            *self.live_orders -= 1;
        } else {
            self.book.side_mut(side).move_to(self.orders, slot, price_ticks, remaining_lots);
        }
        let order = self.orders.get_mut(slot);
        order.price_ticks = price_ticks;
        order.size_lots = size_lots;
        order.remaining_lots = remaining_lots;
        order.hold_per_lot_units = hold_per_lot_units;
        let amended = self.order_event(EventKind::Amended, self.orders.get(slot), size_lots, Reason::None);
        self.out.push(amended);
        if trades {
            self.take(slot);
        }
        Ok(())
    }
}

fn record_fill(order: &mut Order, price_ticks: u64, size_lots: u64) {
    order.remaining_lots -= size_lots;
    order.filled_price_lots += u128::from(price_ticks) * u128::from(size_lots);
    order.state = if order.remaining_lots == 0 { OrderState::Filled } else { OrderState::PartiallyFilled };
}

/// Whether a taker of `side` with `limit_ticks` trades at `maker_price_ticks`.
#[inline]
fn crosses_price(side: Side, limit_ticks: u64, maker_price_ticks: u64) -> bool {
    match side {
        Side::Buy => limit_ticks >= maker_price_ticks,
        Side::Sell => limit_ticks <= maker_price_ticks,
    }
}
