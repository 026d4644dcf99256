//! Property tests: random command streams (every order type and stp mode, cancels, amends,
//! cancel-all, deposits, scarce funds) with every invariant checked after every command, and
//! determinism: the same stream twice gives the same state hash.

mod common;

use core_rs::codes::{EventKind, OrderType, Side, Stp};
use core_rs::command::{AmendOrder, Command, PlaceOrder};
use core_rs::Engine;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use common::{apply, market};

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn command() -> impl Strategy<Value = Command> {
    let place = (1u64..6, 0u32..2, side(), 0u8..5, 0u8..4, 95u64..106, 1u64..30).prop_map(
        |(account, instrument, side, order_type, stp, price_ticks, size_lots)| {
            Command::Place(PlaceOrder {
                account,
                instrument,
                side,
                order_type: OrderType::from_code(order_type).unwrap(),
                stp: Stp::from_code(stp).unwrap(),
                price_ticks,
                size_lots,
                client_order_id: [0; 32],
            })
        },
    );
    let cancel = (1u64..6, 0u32..2, 1u64..80).prop_map(|(account, instrument, order_id)| Command::Cancel {
        account,
        instrument,
        order_id,
    });
    let amend = (1u64..6, 0u32..2, 1u64..80, prop_oneof![Just(0u64), 95u64..106], prop_oneof![Just(0u64), 1u64..40])
        .prop_map(|(account, instrument, order_id, new_price_ticks, new_size_lots)| {
            Command::Amend(AmendOrder { account, instrument, order_id, new_price_ticks, new_size_lots })
        });
    let cancel_all = (1u64..6, prop_oneof![Just(None), (0u32..2).prop_map(Some)])
        .prop_map(|(account, instrument)| Command::CancelAll { account, instrument });
    let deposit = (0u64..6, 0u32..4, 0u64..5_000_000).prop_map(|(account, asset, amount_units)| Command::Deposit {
        account,
        asset,
        amount_units,
    });
    prop_oneof![6 => place, 2 => cancel, 2 => amend, 1 => cancel_all, 1 => deposit]
}

fn run(commands: &[Command]) -> (Engine, usize) {
    let mut engine = market(5, 3_000_000);
    let mut fills = 0;
    for command in commands {
        let events = apply(&mut engine, command);
        fills += events.iter().filter(|e| e.kind() == EventKind::Fill).count();
        if let Err(broken) = engine.check_invariants() {
            panic!("after {command:?}: {broken}");
        }
        let seqs_match = events.iter().all(|e| e.seq == engine.seq());
        assert!(seqs_match, "every event carries its command's sequence number");
    }
    (engine, fills)
}

/// 300 cases by default; `PROPTEST_CASES=N` for a long run (`make test-long`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn invariants_hold_after_every_command(commands in prop::collection::vec(command(), 1..200)) {
        run(&commands);
    }

    #[test]
    fn same_commands_same_state_hash(commands in prop::collection::vec(command(), 1..120)) {
        let (first, _) = run(&commands);
        let (second, _) = run(&commands);
        prop_assert_eq!(first.state_hash(), second.state_hash());
    }
}

#[test]
fn random_streams_do_trade() {
    // Guards the generator above: streams that never fill would prove little.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(command(), 200);
    let fills: usize = (0..20).map(|_| run(&strategy.new_tree(&mut runner).unwrap().current()).1).sum();
    assert!(fills > 100, "only {fills} fills in 20 streams");
}

#[test]
fn different_commands_different_state_hash() {
    let mut a = market(2, 3_000_000);
    let mut b = market(2, 3_000_000);
    apply(&mut a, &common::limit(1, 0, Side::Buy, 100, 1));
    apply(&mut b, &common::limit(1, 0, Side::Buy, 100, 2));
    assert_ne!(a.state_hash(), b.state_hash());
}
