//! The order store: every order the engine knows, live or recently closed. Live orders sit
//! in a slab with a free list (no allocation per order once warm) and a small id index that
//! stays in cache; closed orders move to a bounded FIFO with an index of their own, so only
//! the last `ORDERS_CLOSED_RETAINED_MAX` stay queryable.
//!
//! Live orders are linked into their price level through `prev`/`next` slot indices; the
//! ladder owns those links.
//!
//! Orders placed with a client order id are also indexed by (account, client order id) for
//! as long as the store knows them, with the place that created them and its `accepted`
//! event: the id is unique per account among known orders, and a retry of the same place
//! gets that original outcome back.

use std::collections::VecDeque;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;

use crate::codes::{OrderState, OrderType, Side, Stp};
use crate::command::{ClientOrderId, PlaceOrder, NO_CLIENT_ORDER_ID};
use crate::ledger::AccountSlot;
use crate::limits::ORDERS_CLOSED_RETAINED_MAX;
use crate::wire::EventRecord;

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

/// A known order placed with a client order id: the place a retry must repeat exactly, and
/// the `accepted` event it answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOrder {
    pub place: PlaceOrder,
    pub accepted: EventRecord,
}

#[derive(Clone, Debug, Default)]
pub struct OrderStore {
    /// Live orders (and a taker while it matches); a closed order's slot is reused at once,
    /// so the slab stays as small as the books and hot in cache.
    slab: Vec<Order>,
    free: Vec<OrderSlot>,
    live: HashMap<u64, OrderSlot, BuildHasherDefault<SequentialIdHasher>>,
    /// Closed orders, oldest first, at most `ORDERS_CLOSED_RETAINED_MAX`.
    closed: VecDeque<Order>,
    /// Ordinal (count of orders closed before it) of `closed[0]`.
    closed_front_ordinal: u64,
    closed_index: ClosedIndex,
    client_orders: FxHashMap<(u64, ClientOrderId), ClientOrder>,
}

/// Hashes an order id so that ids close in sequence land in neighbouring buckets (the table
/// takes its bucket from the low bits), while the top bits, which the table uses as a tag
/// to tell keys apart within a group, are mixed. Orders are mostly canceled, amended and
/// filled near others of their time, so lookups hit cache lines that recent ones touched;
/// a fully mixing hash sends every lookup to a random line.
#[derive(Debug, Default)]
pub struct SequentialIdHasher(u64);

impl Hasher for SequentialIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("order ids hash through write_u64");
    }

    #[inline]
    fn write_u64(&mut self, id: u64) {
        const TAG_BITS: u64 = 0x7F << 57;
        self.0 = (id & !TAG_BITS) | (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) & TAG_BITS);
    }
}

/// Where a retained closed order is in the FIFO, by id. Ids are handed out in sequence and
/// orders mostly close soon after they are placed, so a table indexed by `id % size` puts
/// the entries of recent closes next to each other (a hash map scatters them, and every
/// close then costs cache misses). An entry that finds its slot taken by another retained
/// order moves that one to an overflow map.
#[derive(Clone, Debug, Default)]
struct ClosedIndex {
    /// (id, ordinal); id 0 marks a free slot (order ids start at 1), whatever its ordinal.
    slots: Vec<(u64, u64)>,
    overflow: FxHashMap<u64, u64>,
}

const CLOSED_INDEX_SLOTS: usize = (ORDERS_CLOSED_RETAINED_MAX * 2).next_power_of_two();

impl ClosedIndex {
    #[inline]
    fn slot(id: u64) -> usize {
        (id as usize) & (CLOSED_INDEX_SLOTS - 1)
    }

    fn insert(&mut self, id: u64, ordinal: u64) {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0); CLOSED_INDEX_SLOTS];
        }
        let entry = &mut self.slots[Self::slot(id)];
        if entry.0 != 0 {
            self.overflow.insert(entry.0, entry.1);
        }
        *entry = (id, ordinal);
    }

    fn get(&self, id: u64) -> Option<u64> {
        match self.slots.get(Self::slot(id)) {
            Some(&(found, ordinal)) if found == id => Some(ordinal),
            _ => self.overflow.get(&id).copied(),
        }
    }

    fn remove(&mut self, id: u64) {
        match self.slots.get_mut(Self::slot(id)) {
            Some(entry) if entry.0 == id => *entry = (0, 0),
            _ => {
                let removed = self.overflow.remove(&id);
                debug_assert!(removed.is_some(), "closed order {id} was indexed");
            }
        }
    }
}

impl OrderStore {
    /// Allocates and touches (writes) the memory for `live_orders` live orders and for the
    /// full closed-order FIFO and its index, so that no command later waits on the
    /// allocator or on a page fault (static allocation, as at a deployment's start).
    pub fn preallocate(&mut self, live_orders: usize, template: &Order) {
        self.slab.reserve(live_orders.saturating_sub(self.slab.len()));
        let touched_slab = self.slab.len();
        self.slab.resize(self.slab.capacity(), template.clone());
        self.slab.truncate(touched_slab);
        self.free.reserve(live_orders);
        self.live.reserve(live_orders);
        self.closed.reserve_exact((ORDERS_CLOSED_RETAINED_MAX + 1).saturating_sub(self.closed.len()));
        let retained = self.closed.len();
        self.closed.resize(self.closed.capacity(), template.clone());
        self.closed.truncate(retained);
        if self.closed_index.slots.is_empty() {
            // Not all zeros, so the allocator cannot hand out lazily mapped zero pages.
            self.closed_index.slots = vec![(0, u64::MAX); CLOSED_INDEX_SLOTS];
        }
    }

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
        let previous = self.live.insert(id, slot);
        assert!(previous.is_none(), "order id {id} assigned twice");
        slot
    }

    /// The slot of a live order.
    #[inline]
    pub fn find_live(&self, order_id: u64) -> Option<OrderSlot> {
        self.live.get(&order_id).copied()
    }

    /// A live or retained closed order.
    pub fn find(&self, order_id: u64) -> Option<&Order> {
        if let Some(slot) = self.find_live(order_id) {
            return Some(self.get(slot));
        }
        let ordinal = self.closed_index.get(order_id)?;
        self.closed.get((ordinal - self.closed_front_ordinal) as usize)
    }

    #[inline]
    pub fn get(&self, slot: OrderSlot) -> &Order {
        &self.slab[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: OrderSlot) -> &mut Order {
        &mut self.slab[slot as usize]
    }

    /// Moves an order that is no longer live to the closed orders and frees its slot (the
    /// slot is invalid afterwards); forgets the oldest closed order past the retention limit.
    pub fn close(&mut self, slot: OrderSlot) {
        let order = self.slab[slot as usize].clone();
        debug_assert!(!order.is_live());
        let removed = self.live.remove(&order.id);
        debug_assert_eq!(removed, Some(slot));
        self.free.push(slot);
        if self.closed.capacity() == 0 {
            // Reserved whole, once: growing by doubling would copy tens of megabytes in one
            // command (a latency spike of milliseconds). Pages are touched as orders close.
            self.closed.reserve_exact(ORDERS_CLOSED_RETAINED_MAX + 1);
        }
        let ordinal = self.closed_front_ordinal + self.closed.len() as u64;
        self.closed_index.insert(order.id, ordinal);
        self.closed.push_back(order);
        if self.closed.len() > ORDERS_CLOSED_RETAINED_MAX {
            let oldest = self.closed.pop_front().expect("closed is not empty");
            self.closed_index.remove(oldest.id);
            if oldest.client_order_id != NO_CLIENT_ORDER_ID {
                self.client_orders.remove(&(oldest.account, oldest.client_order_id));
            }
            self.closed_front_ordinal += 1;
        }
    }

    /// Indexes an order just placed with a client order id (not `NO_CLIENT_ORDER_ID`).
    pub fn remember_client_order(&mut self, place: &PlaceOrder, accepted: EventRecord) {
        debug_assert_ne!(place.client_order_id, NO_CLIENT_ORDER_ID);
        let previous =
            self.client_orders.insert((place.account, place.client_order_id), ClientOrder { place: *place, accepted });
        debug_assert!(previous.is_none(), "client order id reused while known");
    }

    /// The known order of `account` placed with `client_order_id`.
    pub fn client_order(&self, account: u64, client_order_id: &ClientOrderId) -> Option<&ClientOrder> {
        self.client_orders.get(&(account, *client_order_id))
    }

    /// Every known client order, in (account, client order id) order.
    pub fn client_orders_sorted(&self) -> Vec<&ClientOrder> {
        let mut all: Vec<&ClientOrder> = self.client_orders.values().collect();
        all.sort_unstable_by_key(|c| (c.place.account, c.place.client_order_id));
        all
    }

    /// Appends a closed order as the newest retained one (restoring a snapshot, whose
    /// closed orders never pass the retention limit).
    pub(crate) fn restore_closed(&mut self, order: Order) {
        debug_assert!(!order.is_live() && self.closed.len() < ORDERS_CLOSED_RETAINED_MAX);
        if self.closed.capacity() == 0 {
            self.closed.reserve_exact(ORDERS_CLOSED_RETAINED_MAX + 1);
        }
        let ordinal = self.closed_front_ordinal + self.closed.len() as u64;
        self.closed_index.insert(order.id, ordinal);
        self.closed.push_back(order);
    }

    /// Closed orders still queryable, oldest first.
    pub fn closed(&self) -> impl Iterator<Item = &Order> {
        self.closed.iter()
    }

    /// Live orders in id order (for cancel-all and checks; not on the hot path).
    pub fn live_slots_by_id(&self) -> Vec<OrderSlot> {
        let mut slots: Vec<OrderSlot> = self.live.values().copied().collect();
        slots.sort_unstable_by_key(|&s| self.get(s).id);
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_index_keeps_colliding_ids_in_overflow() {
        let mut index = ClosedIndex::default();
        let (a, b, c) = (7, 7 + CLOSED_INDEX_SLOTS as u64, 7 + 2 * CLOSED_INDEX_SLOTS as u64);
        index.insert(a, 1);
        index.insert(b, 2);
        index.insert(c, 3);
        assert_eq!((index.get(a), index.get(b), index.get(c)), (Some(1), Some(2), Some(3)));
        index.remove(b);
        assert_eq!((index.get(a), index.get(b), index.get(c)), (Some(1), None, Some(3)));
        index.remove(c);
        index.remove(a);
        assert_eq!((index.get(a), index.get(c), index.overflow.len()), (None, None, 0));
        assert_eq!(index.get(8), None);
    }
}
