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

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::closed::ClosedOrders;
use crate::codes::{EventKind, OrderState, OrderType, Side, Stp};
use crate::command::{ClientOrderId, PlaceOrder, NO_CLIENT_ORDER_ID};
use crate::ledger::AccountSlot;
use crate::limits::{ORDERS_CLOSED_RETAINED_MAX, ORDERS_LIVE_MAX};
use crate::pages::advise_huge_pages;
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

/// A known order placed with a client order id, indexed under (account, client order id):
/// the place a retry must repeat exactly, and what its `accepted` event said. Kept compact
/// (56 bytes), since there is one for every such order the store knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOrder {
    pub order_id: u64,
    pub seq: u64,
    pub ts_ns: i64,
    /// The price and size of the place.
    pub price_ticks: u64,
    pub size_lots: u64,
    /// The limit it was accepted at (a market order's protection bound).
    pub accepted_price_ticks: u64,
    pub instrument: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub stp: Stp,
}

impl ClientOrder {
    pub fn new(place: &PlaceOrder, accepted: &EventRecord) -> Self {
        ClientOrder {
            order_id: accepted.order_id,
            seq: accepted.seq,
            ts_ns: accepted.ts_ns,
            price_ticks: place.price_ticks,
            size_lots: place.size_lots,
            accepted_price_ticks: accepted.price_ticks,
            instrument: place.instrument,
            side: place.side,
            order_type: place.order_type,
            stp: place.stp,
        }
    }

    /// The place that created the order.
    pub fn place(&self, account: u64, client_order_id: ClientOrderId) -> PlaceOrder {
        PlaceOrder {
            account,
            instrument: self.instrument,
            side: self.side,
            order_type: self.order_type,
            stp: self.stp,
            price_ticks: self.price_ticks,
            size_lots: self.size_lots,
            client_order_id,
        }
    }

    /// The `accepted` event the place answered with.
    pub fn accepted(&self, account: u64) -> EventRecord {
        EventRecord {
            order_id: self.order_id,
            account,
            price_ticks: self.accepted_price_ticks,
            size_lots: self.size_lots,
            side: self.side.code(),
            instrument: self.instrument,
            ..EventRecord::new(self.seq, self.ts_ns, EventKind::Accepted)
        }
    }
}

/// `clone_from` reuses the target's memory (see `Engine`).
#[derive(Debug, Default)]
pub struct OrderStore {
    /// Live orders (and a taker while it matches); a closed order's slot is reused at once,
    /// so the slab stays as small as the books and hot in cache. Its capacity is reserved
    /// whole with the first order (see `reserve_slab`).
    slab: Vec<Order>,
    free: Vec<OrderSlot>,
    live: LiveIndex,
    /// Closed orders, oldest first, at most `ORDERS_CLOSED_RETAINED_MAX` (a copy shares most
    /// of them: see `ClosedOrders`).
    closed: ClosedOrders,
    /// Ordinal (count of orders closed before it) of `closed[0]`.
    closed_front_ordinal: u64,
    closed_index: ClosedIndex,
    client_orders: ClientOrders,
}

/// The slot of each live order, by id: a table indexed by `id % size` that holds only slots
/// (the order in the slab, which a lookup reads anyway, tells whether it is the id sought),
/// so a lookup touches one line of the table and the order's own. Ids are handed out in
/// sequence, so in a shallow book live ids rarely share an entry; in a deep one they spread
/// far beyond the table's size, which therefore keeps `LIVE_INDEX_ENTRIES_PER_ORDER` entries
/// per live order at the least. An id whose entry is taken goes to an overflow map.
///
/// The table grows by doubling, a few entries at a time: the new table takes new orders at
/// once, and each insert moves `LIVE_INDEX_MOVES_PER_INSERT` entries of the previous one,
/// which lookups still read until it is empty. (Moving them all in one insert stalled order
/// entry 3 ms at 131,072 live orders and 14 ms at 524,288 here, doubling with the book.)
#[derive(Debug, Default)]
struct LiveIndex {
    /// A power of two long (or empty before the first insert).
    slots: Vec<TableEntry>,
    /// While growing, the table before: its entries from `moved` on may still hold orders
    /// (the ones before are all `EMPTY`). Empty when not growing.
    previous: Vec<TableEntry>,
    moved: usize,
    overflow: FxHashMap<u64, OrderSlot>,
    len: usize,
}

/// An entry of the live index's tables: `EMPTY`, or a slot plus one. A new table is then all
/// zeros, which the allocator hands out as pages not yet mapped: growing writes no table up
/// front (filling 8 MB with `NIL` took 2–4 ms at 524,288 live orders).
type TableEntry = u32;
const EMPTY: TableEntry = 0;

#[inline]
fn table_entry(slot: OrderSlot) -> TableEntry {
    slot + 1
}

/// The slot an entry holds, `NIL` for `EMPTY`.
#[inline]
fn slot_in(entry: TableEntry) -> OrderSlot {
    entry.wrapping_sub(1)
}

/// Entries of the previous table moved per insert while the index grows: the move ends after
/// an 8th of the inserts that would make the new table grow again.
const LIVE_INDEX_MOVES_PER_INSERT: usize = 32;

/// Known orders placed with a client order id, by (account, client order id).
type ClientOrderKey = (u64, ClientOrderId);

const CLIENT_ORDER_SHARDS: usize = 256;

/// The client order index, split over `CLIENT_ORDER_SHARDS` hash maps by bits 40–47 of the
/// key's hash (clear of the low bits a map indexes by and of the top bits it tags entries
/// with). A map that grows moves everything it holds in the command that makes it grow: one
/// map of 374,000 entries stalled order entry 50 ms here, and it would grow to millions.
/// A shard holds a 256th of them.
#[derive(Debug)]
struct ClientOrders {
    shards: Vec<FxHashMap<ClientOrderKey, ClientOrder>>,
}

impl Default for ClientOrders {
    fn default() -> Self {
        ClientOrders { shards: (0..CLIENT_ORDER_SHARDS).map(|_| FxHashMap::default()).collect() }
    }
}

impl Clone for ClientOrders {
    clone_through_clone_from!(ClientOrders);

    fn clone_from(&mut self, source: &Self) {
        let ClientOrders { shards } = source;
        for (shard, from) in self.shards.iter_mut().zip(shards) {
            if shard.is_empty() && shard.capacity() >= from.len() {
                // Laid out ahead (`reserve`), probably for more buckets than `from` has, which
                // `clone_from` would give back for fresh memory of `from`'s size.
                shard.extend(from.iter().map(|(key, known)| (*key, *known)));
            } else {
                shard.clone_from(from);
            }
        }
    }
}

impl ClientOrders {
    fn shard(&self, key: &ClientOrderKey) -> &FxHashMap<ClientOrderKey, ClientOrder> {
        &self.shards[Self::shard_of(key)]
    }

    fn shard_mut(&mut self, key: &ClientOrderKey) -> &mut FxHashMap<ClientOrderKey, ClientOrder> {
        &mut self.shards[Self::shard_of(key)]
    }

    fn shard_of(key: &ClientOrderKey) -> usize {
        (FxBuildHasher.hash_one(key) >> 40) as usize % CLIENT_ORDER_SHARDS
    }

    fn insert(&mut self, key: ClientOrderKey, known: ClientOrder) -> Option<ClientOrder> {
        self.shard_mut(&key).insert(key, known)
    }

    fn get(&self, key: &ClientOrderKey) -> Option<&ClientOrder> {
        self.shard(key).get(key)
    }

    fn remove(&mut self, key: &ClientOrderKey) -> Option<ClientOrder> {
        self.shard_mut(key).remove(key)
    }

    fn iter(&self) -> impl Iterator<Item = (&ClientOrderKey, &ClientOrder)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    /// Room for `known` orders in all, mapped (so no insert or copy into it meets a page fault):
    /// each shard's share with an eighth to spare, written once and cleared.
    fn reserve(&mut self, known: usize) {
        let per_shard = known / CLIENT_ORDER_SHARDS + known / CLIENT_ORDER_SHARDS / 8;
        let filler = ClientOrder {
            order_id: 0,
            seq: 0,
            ts_ns: 0,
            price_ticks: 0,
            size_lots: 0,
            accepted_price_ticks: 0,
            instrument: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            stp: Stp::CancelMaker,
        };
        for shard in &mut self.shards {
            if shard.is_empty() && shard.capacity() < per_shard {
                shard.reserve(per_shard);
                shard.extend((0..per_shard as u64).map(|account| ((account, NO_CLIENT_ORDER_ID), filler)));
                shard.clear();
            }
        }
    }
}

const LIVE_INDEX_SLOTS_MIN: usize = 1 << 12;
/// Table entries per live order at the least (see `LiveIndex`). In a deep book the live ids
/// spread far beyond the table's size, so a new id finds its entry taken about as often as
/// the table is full, and goes to the overflow map (a hash map insert, and a slower lookup
/// and remove). At two entries per order that was up to half the inserts; four took the
/// replay of a 10,000,000-command journal from 4.5 to 5.3 M commands/s (medians of five,
/// 2026-11-23), eight was slower again (4.8 M/s: more table to map and miss in).
const LIVE_INDEX_ENTRIES_PER_ORDER: usize = 4;
/// Slots the slab may need: every live order, and a taker while it matches.
const SLAB_SLOTS_MAX: usize = ORDERS_LIVE_MAX + 1;

impl Clone for OrderStore {
    clone_through_clone_from!(OrderStore);

    fn clone_from(&mut self, source: &Self) {
        // Every field named, so a new one cannot be left out of the copy.
        let OrderStore { slab, free, live, closed, closed_front_ordinal, closed_index, client_orders } = source;
        if !slab.is_empty() {
            self.reserve_slab();
        }
        self.slab.clone_from(slab);
        self.free.clone_from(free);
        self.live.clone_from(live);
        self.closed.clone_from(closed);
        self.closed_front_ordinal = *closed_front_ordinal;
        self.closed_index.clone_from(closed_index);
        self.client_orders.clone_from(client_orders);
    }
}

impl Clone for LiveIndex {
    clone_through_clone_from!(LiveIndex);

    fn clone_from(&mut self, source: &Self) {
        let LiveIndex { slots, previous, moved, overflow, len } = source;
        self.slots.clone_from(slots);
        self.previous.clone_from(previous);
        self.moved = *moved;
        self.overflow.clone_from(overflow);
        self.len = *len;
    }
}

impl Clone for ClosedIndex {
    clone_through_clone_from!(ClosedIndex);

    fn clone_from(&mut self, source: &Self) {
        let ClosedIndex { slots, overflow } = source;
        self.slots.clone_from(slots);
        self.overflow.clone_from(overflow);
    }
}

impl LiveIndex {
    /// The entry of `id` (any index is past the end of a table not yet laid out).
    #[inline]
    fn entry(&self, id: u64) -> usize {
        (id as usize) & self.slots.len().wrapping_sub(1)
    }

    /// The entry of `id` in the previous table (any index is past the end when there is none).
    #[inline]
    fn previous_entry(&self, id: u64) -> usize {
        (id as usize) & self.previous.len().wrapping_sub(1)
    }

    /// Takes `id`, held at `slot`, out of whichever table or the overflow holds it.
    fn remove(&mut self, id: u64, slot: OrderSlot) {
        let (entry, previous_entry) = (self.entry(id), self.previous_entry(id));
        if self.slots[entry] == table_entry(slot) {
            self.slots[entry] = EMPTY;
        } else if self.previous.get(previous_entry) == Some(&table_entry(slot)) {
            self.previous[previous_entry] = EMPTY;
        } else {
            let removed = self.overflow.remove(&id);
            debug_assert_eq!(removed, Some(slot));
        }
        self.len -= 1;
    }

    /// Whether the index maps `id` to `slot`.
    fn holds(&self, id: u64, slot: OrderSlot) -> bool {
        self.slots.get(self.entry(id)) == Some(&table_entry(slot))
            || self.previous.get(self.previous_entry(id)) == Some(&table_entry(slot))
            || self.overflow.get(&id) == Some(&slot)
    }

    /// Table entries for `live_orders` orders at no more than `1 / LIVE_INDEX_ENTRIES_PER_ORDER`
    /// of the entries.
    fn slots_for(live_orders: usize) -> usize {
        (live_orders * LIVE_INDEX_ENTRIES_PER_ORDER).next_power_of_two().max(LIVE_INDEX_SLOTS_MIN)
    }
}

/// Where a retained closed order is in the FIFO, by id. Ids are handed out in sequence and
/// orders mostly close soon after they are placed, so a table indexed by `id % size` puts
/// the entries of recent closes next to each other (a hash map scatters them, and every
/// close then costs cache misses). An entry that finds its slot taken by another retained
/// order moves that one to an overflow map.
#[derive(Debug, Default)]
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

    /// A cache hint for the entry of `id`.
    #[inline]
    fn prefetch(&self, id: u64) {
        if let Some(entry) = self.slots.get(Self::slot(id)) {
            prefetch(entry);
        }
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
        self.reserve_slab();
        let touched_slab = self.slab.len();
        self.slab.resize(live_orders.max(touched_slab), template.clone());
        self.slab.truncate(touched_slab);
        self.free.reserve(live_orders);
        if self.live.slots.len() < LiveIndex::slots_for(live_orders) {
            self.grow_live_index(LiveIndex::slots_for(live_orders));
        }
        self.move_live_entries(usize::MAX);
        // A new table comes as pages not yet mapped (see `TableEntry`): writing maps them.
        for entry in &mut self.live.slots {
            *entry = std::hint::black_box(*entry);
        }
        self.closed.preallocate(ORDERS_CLOSED_RETAINED_MAX + 1, template);
        self.client_orders.reserve(live_orders + ORDERS_CLOSED_RETAINED_MAX);
        if self.closed_index.slots.is_empty() {
            // Not all zeros, so the allocator cannot hand out lazily mapped zero pages.
            self.closed_index.slots = vec![(0, u64::MAX); CLOSED_INDEX_SLOTS];
        }
    }

    /// Reserves the slab's capacity for every slot it may ever need, once. A slab that grew
    /// by doubling would copy all its orders in the command that made it grow: 16 MB at
    /// 131,072 orders, a stall of 30–60 ms under the sequencer's lock on this project's VM,
    /// and hundreds of MB near `ORDERS_LIVE_MAX`. The reservation is address space: memory is
    /// mapped as slots are first written (`preallocate` writes them ahead).
    fn reserve_slab(&mut self) {
        if self.slab.capacity() == 0 {
            self.slab.reserve_exact(SLAB_SLOTS_MAX);
            advise_huge_pages(&self.slab);
        }
    }

    pub fn insert(&mut self, order: Order) -> OrderSlot {
        self.reserve_slab();
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
        if self.live.len * LIVE_INDEX_ENTRIES_PER_ORDER >= self.live.slots.len() {
            self.grow_live_index(LiveIndex::slots_for(self.live.len + 1));
        }
        self.index_live(id, slot);
        self.move_live_entries(LIVE_INDEX_MOVES_PER_INSERT);
        slot
    }

    /// Indexes a new live order. Its id is not live already: a place hands out a new id, a
    /// snapshot's restore refuses an id twice, and a move re-indexes each id once. (So an
    /// entry taken by another order is not read to compare ids: that order lies anywhere in
    /// the slab, and the read was most of an insert's time in a replay of a deep book.)
    fn index_live(&mut self, id: u64, slot: OrderSlot) {
        let entry = self.live.entry(id);
        let occupant = slot_in(self.live.slots[entry]);
        if occupant == NIL {
            self.live.slots[entry] = table_entry(slot);
        } else {
            debug_assert_ne!(self.slab[occupant as usize].id, id, "order id {id} assigned twice");
            let previous = self.live.overflow.insert(id, slot);
            assert!(previous.is_none(), "order id {id} assigned twice");
        }
        self.live.len += 1;
    }

    /// Starts moving the live index to a table of `slots` entries (see `LiveIndex`); a move
    /// still under way is finished first.
    fn grow_live_index(&mut self, slots: usize) {
        self.move_live_entries(usize::MAX);
        self.live.previous = std::mem::replace(&mut self.live.slots, vec![EMPTY; slots]);
        self.live.moved = 0;
    }

    /// Moves up to `entries` entries of the previous table into the current one.
    fn move_live_entries(&mut self, entries: usize) {
        if self.live.previous.is_empty() {
            return;
        }
        let end = self.live.previous.len().min(self.live.moved.saturating_add(entries));
        for entry in self.live.moved..end {
            let slot = slot_in(std::mem::replace(&mut self.live.previous[entry], EMPTY));
            if slot != NIL {
                self.live.len -= 1;
                self.index_live(self.slab[slot as usize].id, slot);
            }
        }
        self.live.moved = end;
        if end == self.live.previous.len() {
            self.live.previous = Vec::new();
            self.live.moved = 0;
        }
    }

    /// The slot of a live order.
    #[inline]
    pub fn find_live(&self, order_id: u64) -> Option<OrderSlot> {
        let in_table = self.live.slots.get(self.live.entry(order_id))?;
        if let Some(slot) = self.slot_of_id(in_table, order_id) {
            return Some(slot);
        }
        let in_previous = self.live.previous.get(self.live.previous_entry(order_id));
        if let Some(slot) = in_previous.and_then(|entry| self.slot_of_id(entry, order_id)) {
            return Some(slot);
        }
        if self.live.overflow.is_empty() {
            return None;
        }
        self.live.overflow.get(&order_id).copied()
    }

    /// The slot a table entry holds if the order there is `order_id`.
    #[inline]
    fn slot_of_id(&self, entry: &TableEntry, order_id: u64) -> Option<OrderSlot> {
        let slot = slot_in(*entry);
        (slot != NIL && self.slab[slot as usize].id == order_id).then_some(slot)
    }

    /// Asks the CPU to bring the index entry of `order_id` into cache, so that a lookup a
    /// few commands later does not wait on memory. A hint only: nothing changes.
    #[inline]
    pub fn prefetch_index(&self, order_id: u64) {
        if let Some(entry) = self.live.slots.get(self.live.entry(order_id)) {
            prefetch(entry);
        }
    }

    /// Asks the CPU to bring the order the index names for `order_id` into cache (its entry
    /// should be cached by `prefetch_index` already). A hint only: nothing changes.
    #[inline]
    pub fn prefetch_order(&self, order_id: u64) {
        let slot = self.live.slots.get(self.live.entry(order_id)).copied().map_or(NIL, slot_in);
        if let Some(order) = self.slab.get(slot as usize) {
            prefetch(order);
        }
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
    /// slot is invalid afterwards); forgets the oldest closed order past the retention limit,
    /// and then asks for the index entry of the next oldest, which the next close forgets:
    /// the oldest orders closed in no order of id, so their entries lie anywhere in the
    /// index's 8 MB and each one was a cache miss (a quarter of `close` in a replay's profile).
    pub fn close(&mut self, slot: OrderSlot) {
        let order = self.slab[slot as usize].clone();
        debug_assert!(!order.is_live());
        self.live.remove(order.id, slot);
        self.free.push(slot);
        self.push_closed(order);
        if self.closed.len() > ORDERS_CLOSED_RETAINED_MAX {
            let oldest = self.closed.pop_front().expect("closed is not empty");
            self.closed_index.remove(oldest.id);
            if oldest.client_order_id != NO_CLIENT_ORDER_ID {
                self.client_orders.remove(&(oldest.account, oldest.client_order_id));
            }
            self.closed_front_ordinal += 1;
            if let Some(next_oldest) = self.closed.get(0) {
                self.closed_index.prefetch(next_oldest.id);
            }
        }
    }

    /// Indexes an order just placed with a client order id (not `NO_CLIENT_ORDER_ID`).
    pub fn remember_client_order(&mut self, account: u64, client_order_id: ClientOrderId, known: ClientOrder) {
        debug_assert_ne!(client_order_id, NO_CLIENT_ORDER_ID);
        let previous = self.client_orders.insert((account, client_order_id), known);
        debug_assert!(previous.is_none(), "client order id reused while known");
    }

    /// The known order of `account` placed with `client_order_id`.
    pub fn client_order(&self, account: u64, client_order_id: &ClientOrderId) -> Option<&ClientOrder> {
        self.client_orders.get(&(account, *client_order_id))
    }

    /// Every known client order with its (account, client order id), in no defined order.
    pub fn client_orders(&self) -> impl Iterator<Item = (&ClientOrderKey, &ClientOrder)> {
        self.client_orders.iter()
    }

    /// How many client order ids are indexed.
    pub fn client_orders_count(&self) -> usize {
        self.client_orders.len()
    }

    /// Every known client order with its (account, client order id), in that order.
    pub fn client_orders_sorted(&self) -> Vec<(&ClientOrderKey, &ClientOrder)> {
        // Sized up front: a snapshot's thread calls this, and a vector that grows copies itself
        // inside the allocator's lock, which order entry waits on too (see `Engine::snapshot`).
        let mut all = Vec::with_capacity(self.client_orders.len());
        all.extend(self.client_orders.iter());
        all.sort_unstable_by_key(|(key, _)| **key);
        all
    }

    /// Appends a closed order as the newest retained one (restoring a snapshot, whose
    /// closed orders never pass the retention limit).
    pub(crate) fn restore_closed(&mut self, order: Order) {
        debug_assert!(!order.is_live() && self.closed.len() < ORDERS_CLOSED_RETAINED_MAX);
        self.push_closed(order);
    }

    /// Appends a closed order as the newest retained one, indexed by id.
    fn push_closed(&mut self, order: Order) {
        let ordinal = self.closed_front_ordinal + self.closed.len() as u64;
        self.closed_index.insert(order.id, ordinal);
        self.closed.push_back(order);
    }

    /// How many closed orders are still queryable.
    pub fn closed_count(&self) -> usize {
        self.closed.len()
    }

    /// Closed orders still queryable, oldest first.
    pub fn closed(&self) -> impl Iterator<Item = &Order> {
        self.closed.iter()
    }

    /// Live orders in the slab's order, which depends on the order slots were freed and
    /// taken in (for whoever does not care about the order: the state hash's sum), each with
    /// the id of the order behind it in its level (None for the last). That order is asked
    /// into cache `BEHIND_PREFETCH_DISTANCE` slots ahead: it lies anywhere in the slab.
    pub fn live_in_slab_order(&self) -> impl Iterator<Item = (&Order, Option<u64>)> {
        const BEHIND_PREFETCH_DISTANCE: usize = 8;
        self.slab.iter().enumerate().filter(|(_, order)| order.is_live()).map(move |(slot, order)| {
            if let Some(behind_ahead) =
                self.slab.get(slot + BEHIND_PREFETCH_DISTANCE).and_then(|o| self.slab.get(o.next as usize))
            {
                prefetch(behind_ahead);
            }
            (order, (order.next != NIL).then(|| self.slab[order.next as usize].id))
        })
    }

    /// Live orders in id order (for checks; not on the hot path).
    pub fn live_slots_by_id(&self) -> Vec<OrderSlot> {
        self.live_slots_by_id_where(|_| true)
    }

    /// The live orders that `selected` picks, in id order: one pass over the slab in memory
    /// order, and only the picked ones sorted (a kill switch sorts its account's orders, not
    /// the whole book's).
    pub fn live_slots_by_id_where(&self, selected: impl Fn(&Order) -> bool) -> Vec<OrderSlot> {
        let mut slots: Vec<OrderSlot> = (0..self.slab.len() as OrderSlot)
            .filter(|&slot| {
                let order = &self.slab[slot as usize];
                order.is_live() && selected(order) && self.live.holds(order.id, slot)
            })
            .collect();
        slots.sort_unstable_by_key(|&s| self.get(s).id);
        slots
    }
}

/// A cache hint for the line holding `value`.
#[inline]
fn prefetch<T>(value: &T) {
    // SAFETY: SSE is part of every x86-64 target, and a prefetch never faults or writes,
    // whatever the address; `value` is a valid reference anyway.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(value).cast());
    }
    // Elsewhere no hint is given.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn order(id: u64) -> Order {
        Order {
            id,
            account: 1,
            price_ticks: 1,
            size_lots: 1,
            remaining_lots: 1,
            filled_price_lots: 0,
            hold_per_lot_units: 1,
            prev: NIL,
            next: NIL,
            account_slot: 0,
            instrument: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            stp: Stp::CancelMaker,
            state: OrderState::Live,
            client_order_id: [0; 32],
        }
    }

    fn close(store: &mut OrderStore, id: u64) {
        let slot = store.find_live(id).expect("live");
        store.get_mut(slot).state = OrderState::Canceled;
        store.close(slot);
    }

    #[test]
    fn closed_orders_past_the_retention_limit_are_forgotten_oldest_first_and_a_copy_keeps_its_own() {
        let mut store = OrderStore::default();
        let mut copy = OrderStore::default();
        let total = ORDERS_CLOSED_RETAINED_MAX as u64 * 3 / 2 + 7;
        let halfway = total / 2;
        for id in 1..=total {
            store.insert(order(id));
            close(&mut store, id);
            if id == halfway {
                copy.clone_from(&store);
            }
        }
        let forgotten = total - ORDERS_CLOSED_RETAINED_MAX as u64;
        assert!(store.find(forgotten).is_none());
        assert_eq!(store.find(forgotten + 1).map(|o| o.id), Some(forgotten + 1));
        assert_eq!(store.find(total).map(|o| o.id), Some(total));
        assert!(store.closed().map(|o| o.id).eq(forgotten + 1..=total));
        assert!(copy.closed().map(|o| o.id).eq(1..=halfway), "the copy holds what the store held then");
        assert_eq!(copy.find(1).map(|o| o.id), Some(1));
        assert!(copy.find(halfway + 1).is_none());
    }

    #[test]
    fn live_index_keeps_colliding_ids_in_overflow_and_grows() {
        let mut store = OrderStore::default();
        let size = LIVE_INDEX_SLOTS_MIN as u64;
        let (a, b, c) = (5, 5 + size, 5 + 2 * size);
        for id in [a, b, c] {
            store.insert(order(id));
        }
        assert_eq!(store.live.overflow.len(), 2);
        close(&mut store, a);
        assert_eq!((store.find_live(a), store.find(a).map(|o| o.is_live())), (None, Some(false)));
        assert!(store.find_live(b).is_some() && store.find_live(c).is_some());
        close(&mut store, c);
        assert_eq!(store.find_live(c), None);
        let more: Vec<u64> = (c + 1..=c + size).collect();
        for &id in &more {
            store.insert(order(id));
        }
        assert!(store.live.slots.len() > LIVE_INDEX_SLOTS_MIN, "the table grew");
        for id in more.iter().copied().chain([b]) {
            assert_eq!(store.get(store.find_live(id).expect("live")).id, id);
        }
        assert_eq!(store.find_live(a), None);
        assert_eq!(store.live_slots_by_id().len(), more.len() + 1);
    }

    #[test]
    fn the_live_index_grows_a_few_entries_an_insert_and_finds_every_order_meanwhile() {
        let mut store = OrderStore::default();
        let mut live: Vec<u64> = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let (mut next_id, mut growths, mut moves_seen) = (1u64, 0, false);
        while growths < 5 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Mostly inserts, some closes of random live orders; ids sometimes skip ahead by a
            // table's length, so that entries collide and overflow.
            if live.is_empty() || !rng.is_multiple_of(4) {
                next_id += if rng.is_multiple_of(97) { store.live.slots.len().max(1) as u64 } else { 1 };
                let slots_before = store.live.slots.len();
                store.insert(order(next_id));
                live.push(next_id);
                growths += usize::from(store.live.slots.len() > slots_before);
                let left = store.live.previous.len() - store.live.moved;
                moves_seen |= left > 0;
                assert!(left == 0 || store.live.moved.is_multiple_of(LIVE_INDEX_MOVES_PER_INSERT));
                assert!(store.live.slots.len() >= store.live.len * LIVE_INDEX_ENTRIES_PER_ORDER, "headroom kept");
            } else {
                let id = live.swap_remove((rng >> 8) as usize % live.len());
                close(&mut store, id);
                assert_eq!(store.find_live(id), None);
            }
            if rng.is_multiple_of(64) {
                for &id in &live {
                    assert_eq!(store.get(store.find_live(id).expect("live")).id, id);
                }
            }
        }
        assert!(moves_seen, "some inserts ran while the previous table still held orders");
        assert_eq!(store.live.len, live.len());
        live.sort_unstable();
        let by_id: Vec<u64> = store.live_slots_by_id().iter().map(|&slot| store.get(slot).id).collect();
        assert_eq!(by_id, live);
        assert_eq!(store.clone().live_slots_by_id().len(), live.len());
    }

    #[test]
    fn the_slab_never_moves_its_orders_and_copies_reserve_as_much() {
        let mut store = OrderStore::default();
        store.insert(order(1));
        let first: *const Order = store.get(0);
        for id in 2..=200_000 {
            store.insert(order(id));
        }
        assert!(std::ptr::eq(first, store.get(0)), "growing moved no order");
        let copy = store.clone();
        assert!(copy.slab.capacity() >= SLAB_SLOTS_MAX, "a copy grows without moving orders too");
        assert_eq!(copy.get(199_999).id, 200_000);
    }

    #[test]
    fn client_orders_spread_over_the_shards_and_copy_whole() {
        let known = |order_id| ClientOrder {
            order_id,
            seq: order_id,
            ts_ns: 0,
            price_ticks: 1,
            size_lots: 1,
            accepted_price_ticks: 1,
            instrument: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            stp: Stp::CancelMaker,
        };
        let key = |i: u64| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(format!("c{i:07}").as_bytes());
            (1 + i % 7, id)
        };
        let mut orders = ClientOrders::default();
        let entries = 64 * CLIENT_ORDER_SHARDS as u64;
        for i in 0..entries {
            assert!(orders.insert(key(i), known(i)).is_none());
        }
        let sizes: Vec<usize> = orders.shards.iter().map(|shard| shard.len()).collect();
        assert!(sizes.iter().all(|&size| (16..=160).contains(&size)), "64 a shard on average: {sizes:?}");
        for i in (0..entries).step_by(2) {
            assert_eq!(orders.remove(&key(i)).map(|known| known.order_id), Some(i));
        }
        let mut copy = ClientOrders::default();
        copy.insert(key(entries), known(entries));
        copy.clone_from(&orders);
        for i in 0..entries + 1 {
            let expected = (i % 2 == 1 && i < entries).then_some(i);
            assert_eq!(copy.get(&key(i)).map(|known| known.order_id), expected);
        }
        assert_eq!(copy.iter().count(), orders.iter().count());
        // Into a store laid out ahead: the same entries, in the memory reserved (none moved).
        let mut laid_out = ClientOrders::default();
        laid_out.reserve(2 * entries as usize);
        assert!(laid_out.shards.iter().all(|shard| shard.is_empty()), "laid out, nothing kept");
        let capacities: Vec<usize> = laid_out.shards.iter().map(|shard| shard.capacity()).collect();
        laid_out.clone_from(&orders);
        assert_eq!(laid_out.shards.iter().map(|shard| shard.capacity()).collect::<Vec<_>>(), capacities);
        let entries_of = |store: &ClientOrders| {
            let mut all: Vec<(ClientOrderKey, u64)> = store.iter().map(|(key, known)| (*key, known.order_id)).collect();
            all.sort_unstable();
            all
        };
        assert_eq!(entries_of(&laid_out), entries_of(&orders));
    }

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
