//! The retained closed orders: a FIFO (orders join at the back and are forgotten from the
//! front) kept in chunks of `CHUNK_ORDERS`. A full chunk never changes again, so a copy of the
//! FIFO (the state a snapshot or a replica's checkpoint copies while order entry waits)
//! shares the full chunks instead of copying them: 64 pointers instead of 32 MB at the
//! retention limit. Only the chunk being filled, a plain `Vec` that no copy shares, is copied.
//! A forgotten chunk is reused for the next ones, unless a copy still shares it: then the copy
//! keeps it and the FIFO allocates afresh (one allocation per 4,096 orders closed).
//!
//! Rules: every sealed chunk holds `CHUNK_ORDERS` orders and `filling` fewer; the first
//! `front_gone` orders of the oldest chunk (the front sealed one, else `filling`) are
//! forgotten.

use std::collections::VecDeque;
use std::sync::Arc;

use super::orders::Order;

const CHUNK_ORDERS: usize = 4_096;

#[derive(Debug, Default)]
pub(crate) struct ClosedOrders {
    sealed: VecDeque<Arc<Vec<Order>>>,
    filling: Vec<Order>,
    front_gone: usize,
    /// Emptied chunks kept for the next ones (no allocation and no page faults once warm);
    /// not part of the state, so copies leave them where they are.
    free_chunks: Vec<Vec<Order>>,
}

impl Clone for ClosedOrders {
    clone_through_clone_from!(ClosedOrders);

    fn clone_from(&mut self, source: &Self) {
        let ClosedOrders { sealed, filling, front_gone, free_chunks: _ } = source;
        self.sealed.clone_from(sealed);
        self.filling.clone_from(filling);
        self.front_gone = *front_gone;
    }
}

impl ClosedOrders {
    pub(crate) fn len(&self) -> usize {
        self.sealed.len() * CHUNK_ORDERS + self.filling.len() - self.front_gone
    }

    /// The `index`-th retained order, oldest first.
    pub(crate) fn get(&self, index: usize) -> Option<&Order> {
        if index >= self.len() {
            return None;
        }
        let at = self.front_gone + index;
        let (chunk, offset) = (at / CHUNK_ORDERS, at % CHUNK_ORDERS);
        match self.sealed.get(chunk) {
            Some(sealed) => sealed.get(offset),
            None => self.filling.get(offset),
        }
    }

    pub(crate) fn push_back(&mut self, order: Order) {
        if self.filling.capacity() == 0 {
            self.filling = self.fresh_chunk();
        }
        self.filling.push(order);
        if self.filling.len() == CHUNK_ORDERS {
            let fresh = self.fresh_chunk();
            self.sealed.push_back(Arc::new(std::mem::replace(&mut self.filling, fresh)));
        }
    }

    /// Forgets the oldest order; returns it.
    pub(crate) fn pop_front(&mut self) -> Option<Order> {
        let oldest = self.get(0)?.clone();
        self.front_gone += 1;
        if self.front_gone == CHUNK_ORDERS {
            let gone = self.sealed.pop_front().expect("only a sealed chunk is full");
            self.front_gone = 0;
            if let Ok(mut chunk) = Arc::try_unwrap(gone) {
                chunk.clear();
                self.free_chunks.push(chunk);
            }
        }
        Some(oldest)
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Order> {
        let chunks = self.sealed.iter().map(|chunk| chunk.as_slice()).chain([self.filling.as_slice()]);
        let front_gone = self.front_gone;
        chunks.enumerate().flat_map(move |(i, chunk)| &chunk[if i == 0 { front_gone } else { 0 }..])
    }

    /// Allocates and writes (maps) the chunks that `orders` retained orders need, from a copy of
    /// `template`, so that orders closing later never wait on the allocator or a page fault.
    pub(crate) fn preallocate(&mut self, orders: usize, template: &Order) {
        let chunks_needed = orders.div_ceil(CHUNK_ORDERS) + 1;
        if self.filling.capacity() == 0 {
            self.filling = self.fresh_chunk();
        }
        while self.sealed.len() + 1 + self.free_chunks.len() < chunks_needed {
            let mut chunk = Vec::with_capacity(CHUNK_ORDERS);
            chunk.resize(CHUNK_ORDERS, template.clone());
            chunk.clear();
            self.free_chunks.push(chunk);
        }
    }

    fn fresh_chunk(&mut self) -> Vec<Order> {
        self.free_chunks.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK_ORDERS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::orders::tests::order;

    fn ids(closed: &ClosedOrders) -> Vec<u64> {
        closed.iter().map(|o| o.id).collect()
    }

    /// A FIFO of the orders with ids `1..=count`.
    fn closed_up_to(count: u64) -> ClosedOrders {
        let mut closed = ClosedOrders::default();
        for id in 1..=count {
            closed.push_back(order(id));
        }
        closed
    }

    #[test]
    fn a_fifo_across_chunks() {
        let total = 3 * CHUNK_ORDERS as u64 + 5;
        let mut closed = closed_up_to(total);
        for id in 1..=CHUNK_ORDERS as u64 + 2 {
            assert_eq!(closed.pop_front().map(|o| o.id), Some(id));
        }
        let expected: Vec<u64> = (CHUNK_ORDERS as u64 + 3..=total).collect();
        assert_eq!(ids(&closed), expected);
        assert_eq!(closed.len(), expected.len());
        assert_eq!(closed.get(0).map(|o| o.id), Some(expected[0]));
        assert_eq!(closed.get(expected.len() - 1).map(|o| o.id), expected.last().copied());
        assert!(closed.get(expected.len()).is_none());
        assert_eq!(closed.free_chunks.len(), 1, "the emptied front chunk is kept for reuse");
    }

    #[test]
    fn a_copy_shares_full_chunks_and_both_go_on_alone() {
        let first = 2 * CHUNK_ORDERS as u64 + 10;
        let mut closed = closed_up_to(first);
        let mut copy = ClosedOrders::default();
        copy.clone_from(&closed);
        assert!(Arc::ptr_eq(&closed.sealed[0], &copy.sealed[0]), "a full chunk is shared");
        for id in first + 1..=first + CHUNK_ORDERS as u64 {
            closed.push_back(order(id));
            closed.pop_front();
        }
        assert_eq!(ids(&copy), (1..=first).collect::<Vec<_>>(), "the copy did not change");
        let expected: Vec<u64> = (CHUNK_ORDERS as u64 + 1..=first + CHUNK_ORDERS as u64).collect();
        assert_eq!(ids(&closed), expected);
        copy.push_back(order(999_999));
        assert_eq!(ids(&closed), expected, "nor did the original when the copy grew");
        assert_eq!(copy.get(first as usize).map(|o| o.id), Some(999_999));
    }
}
