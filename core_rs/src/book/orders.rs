//! The order store: every order the engine knows, live or recently closed, in a slab with a
//! free list (no allocation per order once warm), an id index, and a FIFO of closed orders
//! that bounds how many stay queryable (`ORDERS_CLOSED_RETAINED_MAX`).
//!
//! Live orders are linked into their price level through `prev`/`next` slot indices; the
//! ladder owns those links.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::codes::{OrderState, OrderType, Side, Stp};
use crate::command::ClientOrderId;
use crate::ledger::AccountSlot;
use crate::limits::ORDERS_CLOSED_RETAINED_MAX;

/// Slab index of an order.
pub type OrderSlot = u32;
/// No order: the end of a level's list.
pub const NIL: OrderSlot = u32::MAX;

#[derive(Clone, Debug)]
pub struct Order {
    pub id: u64,
    pub account: u64,
    pub price_ticks: u64,
    /// Total size, the filled part included.
    pub size_lots: u64,
    pub remaining_lots: u64,
    /// Sum of price × size over the order's fills, for the average price.
    pub filled_price_lots: u128,
    /// Minor units held per remaining lot (quote for buys, base for sells).
    pub hold_per_lot_units: u64,
    pub prev: OrderSlot,
    pub next: OrderSlot,
    pub account_slot: AccountSlot,
    pub instrument: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub stp: Stp,
    pub state: OrderState,
    pub client_order_id: ClientOrderId,
}

impl Order {
    pub fn filled_lots(&self) -> u64 {
        self.size_lots - self.remaining_lots
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state, OrderState::Live | OrderState::PartiallyFilled)
    }

    /// What the order holds now: `remaining × hold per lot`.
    pub fn hold_units(&self) -> u64 {
        self.remaining_lots * self.hold_per_lot_units
    }
}

#[derive(Debug, Default)]
pub struct OrderStore {
    slab: Vec<Order>,
    free: Vec<OrderSlot>,
    index: FxHashMap<u64, OrderSlot>,
    closed: VecDeque<OrderSlot>,
}

impl OrderStore {
    pub fn insert(&mut self, order: Order) -> OrderSlot {
        let id = order.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = order;
                slot
            }
            None => {
                self.slab.push(order);
                (self.slab.len() - 1) as OrderSlot
            }
        };
        let previous = self.index.insert(id, slot);
        assert!(previous.is_none(), "order id {id} assigned twice");
        slot
    }

    pub fn find(&self, order_id: u64) -> Option<OrderSlot> {
        self.index.get(&order_id).copied()
    }

    #[inline]
    pub fn get(&self, slot: OrderSlot) -> &Order {
        &self.slab[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: OrderSlot) -> &mut Order {
        &mut self.slab[slot as usize]
    }

    /// Records that a (no longer live) order closed; forgets the oldest closed order past the
    /// retention limit.
    pub fn close(&mut self, slot: OrderSlot) {
        debug_assert!(!self.get(slot).is_live());
        self.closed.push_back(slot);
        if self.closed.len() > ORDERS_CLOSED_RETAINED_MAX {
            let oldest = self.closed.pop_front().expect("closed is not empty");
            let removed = self.index.remove(&self.slab[oldest as usize].id);
            debug_assert_eq!(removed, Some(oldest));
            self.free.push(oldest);
        }
    }

    /// Closed orders still queryable, oldest first.
    pub fn closed(&self) -> impl Iterator<Item = &Order> {
        self.closed.iter().map(|&slot| self.get(slot))
    }

    /// Live orders in id order (for cancel-all and checks; not on the hot path).
    pub fn live_slots_by_id(&self) -> Vec<OrderSlot> {
        let mut slots: Vec<OrderSlot> = self.index.values().copied().filter(|&s| self.get(s).is_live()).collect();
        slots.sort_unstable_by_key(|&s| self.get(s).id);
        slots
    }

    pub fn known_count(&self) -> usize {
        self.index.len()
    }
}
