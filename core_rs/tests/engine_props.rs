//! Property tests: random command streams (every order type and stp mode, cancels, amends,
//! cancel-all, deposits, market-state moves through every state, scarce funds) with every
//! invariant checked after every command, and
//! determinism: the same stream twice gives the same state hash; a snapshot taken anywhere
//! in a stream restores to an engine that continues it identically; every command survives
//! its journal encoding.

mod common;

use core_rs::codes::{EventKind, MarketState, OrderType, Side, Stp};
use core_rs::command::{AmendOrder, Command, PlaceOrder};
use core_rs::wire::{decode_command, encode_command};
use core_rs::Engine;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use common::{apply, market};

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn command() -> impl Strategy<Value = Command> {
    // A few client order ids, so that reuse, retries and the index's upkeep are exercised.
    let client_order_id = prop_oneof![4 => Just(0u8), 1 => 1u8..4].prop_map(|n| {
        let mut id = [0u8; 32];
        if n > 0 {
            id[..4].copy_from_slice(format!("cl-{n}").as_bytes());
        }
        id
    });
    let place = (1u64..6, 0u32..2, side(), 0u8..5, 0u8..4, 95u64..106, 1u64..30, client_order_id).prop_map(
        |(account, instrument, side, order_type, stp, price_ticks, size_lots, client_order_id)| {
            Command::Place(PlaceOrder {
                account,
                instrument,
                side,
                order_type: OrderType::from_code(order_type).unwrap(),
                stp: Stp::from_code(stp).unwrap(),
                price_ticks,
                size_lots,
                client_order_id,
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
    let state = prop_oneof![2 => Just(0u8), 3 => 1u8..5]; // half the moves go back to continuous
    let set_market_state =
        (0u32..2, state, prop_oneof![Just(0u16), 1u16..2_000]).prop_map(|(instrument, state, auction_band_bps)| {
            Command::SetMarketState { instrument, state: MarketState::from_code(state).unwrap(), auction_band_bps }
        });
    prop_oneof![6 => place, 2 => cancel, 2 => amend, 1 => cancel_all, 1 => deposit, 1 => set_market_state]
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
/// `copy` (made of `original`) is the original, indexes and all: the same hash and snapshot,
/// and the same events and state after `rest`.
fn continues_identically(mut copy: Engine, mut original: Engine, rest: &[Command]) -> Result<(), TestCaseError> {
    prop_assert_eq!(copy.state_hash(), original.state_hash());
    prop_assert_eq!(copy.snapshot(), original.snapshot());
    for command in rest {
        prop_assert_eq!(apply(&mut copy, command), apply(&mut original, command));
    }
    prop_assert_eq!(copy.snapshot(), original.snapshot());
    copy.check_invariants().map_err(TestCaseError::fail)
}

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
    fn snapshot_restores_an_engine_that_continues_identically(
        commands in prop::collection::vec(command(), 1..160),
        cut in 0usize..160,
    ) {
        let cut = cut.min(commands.len());
        let (mut original, _) = run(&commands[..cut]);
        let mut restored = Engine::restore(&original.snapshot()).expect("a snapshot restores");
        prop_assert_eq!(restored.state_hash(), original.state_hash());
        prop_assert_eq!(restored.ts_ns(), original.ts_ns());
        for command in &commands[cut..] {
            prop_assert_eq!(apply(&mut restored, command), apply(&mut original, command));
        }
        prop_assert_eq!(restored.state_hash(), original.state_hash());
        prop_assert_eq!(restored.snapshot(), original.snapshot());
    }

    /// A snapshot copies the state into the memory of an engine laid out before (its last
    /// snapshot's), which held another state: the copy must be the original, indexes and all.
    #[test]
    fn a_copy_into_another_engine_continues_identically(
        commands in prop::collection::vec(command(), 1..160),
        earlier in prop::collection::vec(command(), 0..160),
        cut in 0usize..160,
    ) {
        let cut = cut.min(commands.len());
        let (original, _) = run(&commands[..cut]);
        let (mut copy, _) = run(&earlier);
        copy.clone_from(&original);
        continues_identically(copy, original, &commands[cut..])?;
    }

    #[test]
    fn commands_survive_their_journal_encoding(command in command(), ts_ns in any::<i64>()) {
        let mut payload = Vec::new();
        encode_command(ts_ns, &command, &mut payload);
        prop_assert_eq!(decode_command(&payload), Ok((ts_ns, command)));
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

#[test]
fn time_priority_within_a_level_enters_the_state_hash() {
    // Three orders at one price; each engine sends the second or the third to the back (a
    // size up loses priority) and brings its size back (a size down keeps it): the same
    // orders, sizes and holds and the same first order, behind it the other two in opposite
    // orders.
    let [second_last, third_last] = [1usize, 2].map(|moved| {
        let mut engine = market(4, 3_000_000);
        let ids =
            [1, 2, 3].map(|account| apply(&mut engine, &common::limit(account, 0, Side::Buy, 100, 2))[0].order_id);
        for size_lots in [3, 2] {
            let (account, order_id) = (moved as u64 + 1, ids[moved]);
            let amend = AmendOrder { account, instrument: 0, order_id, new_price_ticks: 0, new_size_lots: size_lots };
            assert_eq!(apply(&mut engine, &Command::Amend(amend))[0].kind, EventKind::Amended.code());
        }
        engine.check_invariants().expect("invariants");
        engine.state_hash()
    });
    assert_ne!(second_last, third_last);
}

#[test]
fn a_client_order_id_entry_enters_the_state_hash() {
    // Only the client order id index keeps when a place was accepted (a retry gets it back).
    let Command::Place(mut place) = common::limit(1, 0, Side::Buy, 100, 1) else { unreachable!() };
    place.client_order_id[..4].copy_from_slice(b"cl-1");
    let [at_5, at_6] = [5, 6].map(|ts_ns| {
        let mut engine = market(2, 3_000_000);
        engine.apply(ts_ns, &Command::Place(place), &mut Vec::new()).expect("the place applies");
        engine.state_hash()
    });
    assert_ne!(at_5, at_6);
}

#[test]
fn the_closed_orders_and_the_order_they_closed_in_enter_the_state_hash() {
    // Orders placed and canceled leave the books and the balances as they were: only the
    // ring of closed orders tells these engines apart.
    let closed = |sizes: [u64; 2], cancel_order: [usize; 2]| {
        let mut engine = market(2, 3_000_000);
        let ids =
            sizes.map(|size_lots| apply(&mut engine, &common::limit(1, 0, Side::Buy, 100, size_lots))[0].order_id);
        for at in cancel_order {
            let cancel = Command::Cancel { account: 1, instrument: 0, order_id: ids[at] };
            assert_eq!(apply(&mut engine, &cancel)[0].kind, EventKind::Canceled.code());
        }
        assert_eq!(engine.live_orders(), 0);
        engine.state_hash()
    };
    assert_ne!(closed([1, 2], [0, 1]), closed([1, 3], [0, 1]), "a closed order's size");
    assert_ne!(closed([1, 2], [0, 1]), closed([1, 2], [1, 0]), "the order they closed in");
}

#[test]
fn configuration_commands_survive_their_journal_encoding() {
    let engine = market(1, 1);
    let snapshot_engine = Engine::restore(&engine.snapshot()).unwrap();
    assert_eq!(snapshot_engine.state_hash(), engine.state_hash());
    let spec = core_rs::command::InstrumentSpec {
        symbol: "ETH-BTC".into(),
        base_asset: 2,
        quote_asset: 1,
        lot_units: 7,
        quote_units_per_tick_lot: 3,
        min_size_lots: 2,
        maker_fee_bps: 1,
        taker_fee_bps: 9,
        market_protection_bps: 250,
    };
    let asset = core_rs::command::AssetSpec { name: "SOL".into(), decimals: 9 };
    for command in [Command::AddInstrument(spec), Command::AddAsset(asset)] {
        let mut payload = Vec::new();
        encode_command(-5, &command, &mut payload);
        assert_eq!(decode_command(&payload), Ok((-5, command)));
        assert!(decode_command(&payload[..payload.len() - 1]).is_err(), "a truncated payload is refused");
    }
}

#[test]
fn a_damaged_snapshot_is_refused_not_misread() {
    let (engine, _) = run(&[common::limit(1, 0, Side::Buy, 100, 3), common::limit(2, 0, Side::Sell, 101, 2)]);
    let body = engine.snapshot();
    for cut in [0, 1, body.len() / 2, body.len() - 1] {
        assert!(Engine::restore(&body[..cut]).is_err(), "a body cut at {cut} restores");
    }
    let mut longer = body.clone();
    longer.push(0);
    assert!(Engine::restore(&longer).is_err(), "trailing bytes are refused");
}

/// A snapshot reserves its whole body before it writes the orders (see `Engine::snapshot`):
/// the body ends exactly where the reservation does, with live, closed and client orders.
#[test]
fn a_snapshot_body_takes_exactly_the_memory_it_reserved() {
    let mut commands = Vec::new();
    for n in 0..600u64 {
        let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
        let mut place = common::limit(1 + n % 5, (n / 2 % 2) as u32, side, 95 + n % 12, 1 + n % 3);
        if let Command::Place(order) = &mut place {
            order.client_order_id[..8].copy_from_slice(&n.to_le_bytes());
        }
        commands.push(place);
        if n % 3 == 0 {
            commands.push(Command::Cancel { account: 1 + n % 5, instrument: (n / 2 % 2) as u32, order_id: n + 1 });
        }
    }
    let (engine, fills) = run(&commands);
    let live = engine.live_orders();
    assert!(fills > 50 && live > 50, "{fills} fills, {live} live orders");
    let body = engine.snapshot();
    assert_eq!(body.len(), body.capacity());
}

/// A snapshot of a growing book copies the state into an engine laid out ahead by `preallocate`
/// and holding none: the copy must be the original. A runner of its own: `PROPTEST_CASES`
/// overrides a `proptest!` block's cases, and a case here maps about 100 MB (the retained
/// closed orders' room), so a long run takes a hundredth of its cases (at least 10).
#[test]
fn a_copy_into_a_laid_out_engine_continues_identically() {
    let config =
        ProptestConfig { cases: (cases() / 100).max(10), failure_persistence: None, ..ProptestConfig::default() };
    let strategy = (prop::collection::vec(command(), 1..160), 0usize..160, 0usize..64);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&strategy, |(commands, cut, live_orders)| {
        let cut = cut.min(commands.len());
        let (original, _) = run(&commands[..cut]);
        let mut copy = Engine::default();
        copy.preallocate(live_orders);
        copy.clone_from(&original);
        continues_identically(copy, original, &commands[cut..])
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
