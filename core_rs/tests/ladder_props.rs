//! The paged ladder against an obvious model (a BTreeMap of FIFO queues), on prices spread
//! across many pages: after every push, remove and move, the best price, every level's total and
//! order sequence, and the walk from the best outward must equal the model's.

use std::collections::{BTreeMap, VecDeque};

use core_rs::book::ladder::Ladder;
use core_rs::book::orders::{Order, OrderSlot, OrderStore, NIL};
use core_rs::codes::{OrderState, OrderType, Side, Stp};
use proptest::prelude::*;

fn order(id: u64, price_ticks: u64, lots: u64) -> Order {
    Order {
        id,
        account: 1,
        price_ticks,
        size_lots: lots,
        remaining_lots: lots,
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

#[derive(Clone, Debug)]
enum Op {
    Push { price_ticks: u64, lots: u64 },
    Remove { pick: usize },
    Move { pick: usize, price_ticks: u64, lots: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let price = prop_oneof![1u64..600, 60_000u64..60_600, Just(1u64 << 39)];
    prop_oneof![
        3 => (price.clone(), 1u64..9).prop_map(|(price_ticks, lots)| Op::Push { price_ticks, lots }),
        2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        2 => (any::<usize>(), price, 1u64..9).prop_map(|(pick, price_ticks, lots)| Op::Move { pick, price_ticks, lots }),
    ]
}

fn check(ladder: &Ladder, orders: &OrderStore, model: &BTreeMap<u64, VecDeque<OrderSlot>>, is_bid: bool) {
    let expected: Vec<u64> =
        if is_bid { model.keys().rev().copied().collect() } else { model.keys().copied().collect() };
    let walked: Vec<u64> = ladder.levels().map(|(price, _)| price).collect();
    assert_eq!(walked, expected);
    assert_eq!(ladder.best(), expected.first().copied());
    for (price, queue) in model {
        let level = ladder.level(*price).expect("level exists");
        let mut slot = level.head;
        let mut seen = Vec::new();
        while slot != NIL {
            seen.push(slot);
            slot = orders.get(slot).next;
        }
        assert_eq!(&seen, &queue.iter().copied().collect::<Vec<_>>());
        let total: u64 = queue.iter().map(|&s| orders.get(s).remaining_lots).sum();
        assert_eq!(level.total_lots, total);
    }
}

/// 400 cases by default; `PROPTEST_CASES=N` for a long run (`make test-long`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn ladder_matches_model(is_bid: bool, ops in prop::collection::vec(op(), 1..300)) {
        let mut ladder = Ladder::new(is_bid);
        let mut orders = OrderStore::default();
        let mut model: BTreeMap<u64, VecDeque<OrderSlot>> = BTreeMap::new();
        let mut live: Vec<(u64, OrderSlot)> = Vec::new();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { price_ticks, lots } => {
                    let slot = orders.insert(order(id as u64 + 1, price_ticks, lots));
                    ladder.push_back(&mut orders, slot);
                    model.entry(price_ticks).or_default().push_back(slot);
                    live.push((price_ticks, slot));
                }
                Op::Remove { pick } if !live.is_empty() => {
                    let (price_ticks, slot) = live.swap_remove(pick % live.len());
                    ladder.remove(&mut orders, slot);
                    let queue = model.get_mut(&price_ticks).unwrap();
                    queue.retain(|&s| s != slot);
                    if queue.is_empty() {
                        model.remove(&price_ticks);
                    }
                }
                Op::Move { pick, price_ticks, lots } if !live.is_empty() => {
                    let index = pick % live.len();
                    let (old_price_ticks, slot) = live[index];
                    ladder.move_to(&mut orders, slot, price_ticks, lots);
                    let queue = model.get_mut(&old_price_ticks).unwrap();
                    queue.retain(|&s| s != slot);
                    if queue.is_empty() {
                        model.remove(&old_price_ticks);
                    }
                    model.entry(price_ticks).or_default().push_back(slot);
                    live[index] = (price_ticks, slot);
                }
                Op::Remove { .. } | Op::Move { .. } => {}
            }
            check(&ladder, &orders, &model, is_bid);
        }
    }
}
