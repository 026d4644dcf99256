//! One side of a book: price levels in a paged ladder.
//!
//! Prices are split into pages of `PAGE_LEVELS` consecutive ticks. A page holds its levels
//! densely plus an occupancy bitmap, so finding, creating and emptying a level is a page
//! lookup and a bit operation, and the next level is a bit scan. Pages near the first price
//! the ladder saw are found by index in a small directory, others through a hash map. Pages with
//! any order are also kept in an ordered set, which is touched only when a page gains its
//! first level or loses its last. Empty pages go back to a free list.
//!
//! Each level is a FIFO of orders linked through the order store (time priority). Rules:
//! a level is in the bitmap iff it has orders; `total_lots` is the sum of its orders'
//! remaining sizes; `best` is the best occupied price or `None`.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use super::orders::{OrderSlot, OrderStore, NIL};

const PAGE_SHIFT: u32 = 8;
const PAGE_LEVELS: usize = 1 << PAGE_SHIFT;
const PAGE_WORDS: usize = PAGE_LEVELS / 64;
/// Pages found by direct index around the first price seen (here ±128k ticks); pages
/// outside that window are found through a hash map.
const DIRECTORY_PAGES: usize = 1 << 10;
const NO_PAGE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub head: OrderSlot,
    pub tail: OrderSlot,
    pub count: u32,
    pub total_lots: u64,
}

const EMPTY_LEVEL: Level = Level { head: NIL, tail: NIL, count: 0, total_lots: 0 };

#[derive(Clone, Debug)]
struct Page {
    levels: Box<[Level; PAGE_LEVELS]>,
    occupied: [u64; PAGE_WORDS],
    occupied_count: u32,
}

impl Page {
    fn new() -> Self {
        Page { levels: Box::new([EMPTY_LEVEL; PAGE_LEVELS]), occupied: [0; PAGE_WORDS], occupied_count: 0 }
    }

    /// Lowest occupied offset ≥ `from`.
    fn lowest_from(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = self.occupied.get(word)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            bits = *self.occupied.get(word)?;
        }
    }

    /// Highest occupied offset ≤ `from`.
    fn highest_to(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = self.occupied[word] & (u64::MAX >> (63 - from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + 63 - bits.leading_zeros() as usize);
            }
            word = word.checked_sub(1)?;
            bits = self.occupied[word];
        }
    }
}

/// Links `slot` (holding `lots`) at the tail of the level at `offset` of `page`; true if the
/// level was empty (the caller counts the new level and may make it the best).
#[inline]
fn link_at_tail(page: &mut Page, offset: usize, orders: &mut OrderStore, slot: OrderSlot, lots: u64) -> bool {
    let level = &mut page.levels[offset];
    let tail = level.tail;
    {
        let order = orders.get_mut(slot);
        order.prev = tail;
        order.next = NIL;
    }
    let was_empty = tail == NIL;
    if was_empty {
        level.head = slot;
        page.occupied[offset / 64] |= 1 << (offset % 64);
        page.occupied_count += 1;
    } else {
        orders.get_mut(tail).next = slot;
    }
    level.tail = slot;
    level.count += 1;
    level.total_lots += lots;
    was_empty
}

fn page_of(price_ticks: u64) -> (u64, usize) {
    (price_ticks >> PAGE_SHIFT, (price_ticks as usize) & (PAGE_LEVELS - 1))
}

#[derive(Clone, Debug)]
pub struct Ladder {
    /// Bids: best is the highest price. Asks: best is the lowest.
    is_bid: bool,
    pages: Vec<Page>,
    free_pages: Vec<u32>,
    /// Page slot by `page_no - directory_base`, `NO_PAGE` where none is open.
    directory: Vec<u32>,
    directory_base: u64,
    /// Page slot by page number, for pages outside the directory.
    far_pages: FxHashMap<u64, u32>,
    occupied_pages: BTreeSet<u64>,
    best: Option<u64>,
    levels_count: usize,
    orders_count: usize,
}

impl Ladder {
    pub fn new(is_bid: bool) -> Self {
        Ladder {
            is_bid,
            pages: Vec::new(),
            free_pages: Vec::new(),
            directory: Vec::new(),
            directory_base: 0,
            far_pages: FxHashMap::default(),
            occupied_pages: BTreeSet::new(),
            best: None,
            levels_count: 0,
            orders_count: 0,
        }
    }

    #[inline]
    pub fn best(&self) -> Option<u64> {
        self.best
    }

    pub fn levels_count(&self) -> usize {
        self.levels_count
    }

    pub fn orders_count(&self) -> usize {
        self.orders_count
    }

    /// Whether `a` is a better price than `b` on this side.
    #[inline]
    pub fn better(&self, a: u64, b: u64) -> bool {
        if self.is_bid {
            a > b
        } else {
            a < b
        }
    }

    /// The level at `price`, if it has orders.
    pub fn level(&self, price_ticks: u64) -> Option<&Level> {
        let (page_no, offset) = page_of(price_ticks);
        let page = &self.pages[self.page_slot(page_no)? as usize];
        (page.levels[offset].count > 0).then(|| &page.levels[offset])
    }

    fn level_mut(&mut self, price_ticks: u64) -> &mut Level {
        let (page_no, offset) = page_of(price_ticks);
        let slot = self.page_slot(page_no).expect("level's page is open");
        &mut self.pages[slot as usize].levels[offset]
    }

    /// Appends an order at the tail of its price level (it loses any priority it had).
    pub fn push_back(&mut self, orders: &mut OrderStore, slot: OrderSlot) {
        let (price_ticks, lots) = {
            let order = orders.get(slot);
            (order.price_ticks, order.remaining_lots)
        };
        debug_assert!(lots > 0);
        let (page_no, offset) = page_of(price_ticks);
        let page_slot = match self.page_slot(page_no) {
            Some(page_slot) => page_slot,
            None => self.open_page(page_no),
        };
        let is_new_best = self.best.is_none_or(|best| self.better(price_ticks, best));
        if link_at_tail(&mut self.pages[page_slot as usize], offset, orders, slot, lots) {
            self.levels_count += 1;
            if is_new_best {
                self.best = Some(price_ticks);
            }
        }
        self.orders_count += 1;
    }

    /// Unlinks an order (with its current remaining size) from its level.
    pub fn remove(&mut self, orders: &mut OrderStore, slot: OrderSlot) {
        let (price_ticks, lots, prev, next) = {
            let order = orders.get(slot);
            (order.price_ticks, order.remaining_lots, order.prev, order.next)
        };
        if prev != NIL {
            orders.get_mut(prev).next = next;
        }
        if next != NIL {
            orders.get_mut(next).prev = prev;
        }
        let (page_no, offset) = page_of(price_ticks);
        let page_slot = self.page_slot(page_no).expect("level's page is open");
        let level = &mut self.pages[page_slot as usize].levels[offset];
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        level.count -= 1;
        level.total_lots -= lots;
        let emptied = level.count == 0;
        debug_assert!(!emptied || (level.head == NIL && level.total_lots == 0));
        self.orders_count -= 1;
        if emptied {
            self.clear_level(price_ticks, page_slot);
        }
    }

    /// Moves an order to the tail of the level at `price_ticks` with `lots` remaining (it
    /// loses its priority), as `remove` then `push_back` would. A move within one page (most
    /// amends move a few ticks) looks the page up once and never closes it.
    pub fn move_to(&mut self, orders: &mut OrderStore, slot: OrderSlot, price_ticks: u64, lots: u64) {
        debug_assert!(lots > 0);
        let (old_price_ticks, old_lots, prev, next) = {
            let order = orders.get(slot);
            (order.price_ticks, order.remaining_lots, order.prev, order.next)
        };
        let (page_no, offset) = page_of(price_ticks);
        let (old_page_no, old_offset) = page_of(old_price_ticks);
        let page_slot = match self.page_slot(page_no) {
            Some(page_slot) if page_no == old_page_no => page_slot,
            _ => {
                self.remove(orders, slot);
                let order = orders.get_mut(slot);
                order.price_ticks = price_ticks;
                order.remaining_lots = lots;
                return self.push_back(orders, slot);
            }
        };
        if prev != NIL {
            orders.get_mut(prev).next = next;
        }
        if next != NIL {
            orders.get_mut(next).prev = prev;
        }
        let page = &mut self.pages[page_slot as usize];
        let old_level = &mut page.levels[old_offset];
        if prev == NIL {
            old_level.head = next;
        }
        if next == NIL {
            old_level.tail = prev;
        }
        old_level.count -= 1;
        old_level.total_lots -= old_lots;
        if old_level.count == 0 {
            page.occupied[old_offset / 64] &= !(1 << (old_offset % 64));
            page.occupied_count -= 1;
            self.levels_count -= 1;
            if self.best == Some(old_price_ticks) {
                self.best = self.next_worse(old_price_ticks);
            }
        }
        if self.best.is_none_or(|best| self.better(price_ticks, best)) {
            self.best = Some(price_ticks);
        }
        {
            let order = orders.get_mut(slot);
            order.price_ticks = price_ticks;
            order.remaining_lots = lots;
        }
        if link_at_tail(&mut self.pages[page_slot as usize], offset, orders, slot, lots) {
            self.levels_count += 1;
        }
    }

    /// Lowers a level's total after its order shrank in place (a partial fill or a size-down
    /// amend keeps the order's position).
    pub fn reduce(&mut self, price_ticks: u64, lots: u64) {
        let level = self.level_mut(price_ticks);
        debug_assert!(level.total_lots > lots);
        level.total_lots -= lots;
    }

    /// The first order in time priority at `price`.
    #[inline]
    pub fn head(&self, price_ticks: u64) -> OrderSlot {
        self.level(price_ticks).map_or(NIL, |level| level.head)
    }

    /// The next occupied price after `price` away from the best.
    pub fn next_worse(&self, price_ticks: u64) -> Option<u64> {
        let (page_no, offset) = page_of(price_ticks);
        if self.is_bid {
            if let Some(found) = self.page(page_no).and_then(|p| offset.checked_sub(1).and_then(|o| p.highest_to(o))) {
                return Some((page_no << PAGE_SHIFT) | found as u64);
            }
            let &lower = self.occupied_pages.range(..page_no).next_back()?;
            let found = self.page(lower)?.highest_to(PAGE_LEVELS - 1)?;
            Some((lower << PAGE_SHIFT) | found as u64)
        } else {
            if let Some(found) = self.page(page_no).and_then(|p| p.lowest_from(offset + 1)) {
                return Some((page_no << PAGE_SHIFT) | found as u64);
            }
            let &higher = self.occupied_pages.range(page_no + 1..).next()?;
            let found = self.page(higher)?.lowest_from(0)?;
            Some((higher << PAGE_SHIFT) | found as u64)
        }
    }

    /// Occupied levels from the best outward.
    pub fn levels(&self) -> impl Iterator<Item = (u64, &Level)> + '_ {
        std::iter::successors(self.best, move |&price| self.next_worse(price))
            .map(move |price| (price, self.level(price).expect("occupied level")))
    }

    fn page(&self, page_no: u64) -> Option<&Page> {
        self.page_slot(page_no).map(|slot| &self.pages[slot as usize])
    }

    #[inline]
    fn page_slot(&self, page_no: u64) -> Option<u32> {
        match self.directory.get(page_no.wrapping_sub(self.directory_base) as usize) {
            Some(&slot) => (slot != NO_PAGE).then_some(slot),
            None => self.far_pages.get(&page_no).copied(),
        }
    }

    fn set_page_slot(&mut self, page_no: u64, slot: u32) {
        if self.directory.is_empty() {
            self.directory = vec![NO_PAGE; DIRECTORY_PAGES];
            self.directory_base = page_no.saturating_sub(DIRECTORY_PAGES as u64 / 2);
        }
        match self.directory.get_mut(page_no.wrapping_sub(self.directory_base) as usize) {
            Some(entry) => *entry = slot,
            None if slot == NO_PAGE => {
                self.far_pages.remove(&page_no);
            }
            None => {
                self.far_pages.insert(page_no, slot);
            }
        }
    }

    fn open_page(&mut self, page_no: u64) -> u32 {
        let slot = match self.free_pages.pop() {
            Some(slot) => slot,
            None => {
                self.pages.push(Page::new());
                (self.pages.len() - 1) as u32
            }
        };
        self.set_page_slot(page_no, slot);
        self.occupied_pages.insert(page_no);
        slot
    }

    /// Marks the (now empty) level at `price` unoccupied; `page_slot` is its page's slot.
    fn clear_level(&mut self, price_ticks: u64, page_slot: u32) {
        let (page_no, offset) = page_of(price_ticks);
        let page = &mut self.pages[page_slot as usize];
        page.occupied[offset / 64] &= !(1 << (offset % 64));
        page.occupied_count -= 1;
        self.levels_count -= 1;
        let page_emptied = page.occupied_count == 0;
        if self.best == Some(price_ticks) {
            self.best = self.next_worse(price_ticks);
        }
        if page_emptied {
            self.set_page_slot(page_no, NO_PAGE);
            self.occupied_pages.remove(&page_no);
            self.free_pages.push(page_slot);
        }
    }
}
