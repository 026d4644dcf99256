//! The durable engine's periodic snapshots come from its shadow, a second engine on its own
//! thread that applies the records order entry applied, behind it: each snapshot must hold
//! exactly the state at its seq, although order entry went on past that seq before the shadow
//! got there; and so must those after a restart, whose shadow starts from the snapshot
//! recovery started from and takes the journal's replay.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{limit, market, spot_spec, BTC, ETH, USDT};
use core_rs::codes::Side;
use core_rs::command::{AssetSpec, Command};
use core_rs::durable::{DurableConfig, DurableEngine};
use core_rs::journal::{SnapshotStore, SyncMode};
use core_rs::wire::CommandRecord;
use core_rs::Engine;

const ACCOUNTS: u64 = 8;
const SNAPSHOT_EVERY_COMMANDS: u64 = 5_000;
const BATCH_COMMANDS: u64 = 700;

fn open(dir: &Path) -> DurableEngine {
    let mut config = DurableConfig::new(dir);
    config.snapshot_every_commands = SNAPSHOT_EVERY_COMMANDS;
    config.journal.sync = SyncMode::NoFsyncUnsafeBenchmarkOnly;
    DurableEngine::open(config).expect("open").0
}

/// Batches `batches` of places into both engines; the reference's digest after each batch,
/// by seq, into `digests`.
fn trade(
    durable: &DurableEngine,
    reference: &mut Engine,
    batches: std::ops::Range<u64>,
    digests: &mut BTreeMap<u64, [u8; 32]>,
) {
    for batch in batches {
        let records: Vec<CommandRecord> = (0..BATCH_COMMANDS)
            .map(|i| {
                let n = batch * BATCH_COMMANDS + i;
                let side = if n.is_multiple_of(2) { Side::Buy } else { Side::Sell };
                // Prices close on both sides: some orders trade, most rest.
                let command = limit(1 + n % ACCOUNTS, [BTC, ETH][(n / 2 % 2) as usize], side, 900 + n % 97, 1 + n % 3);
                CommandRecord::from_command(n as i64, &command).expect("a trading command")
            })
            .collect();
        durable.execute_records(&records, &mut Vec::new()).expect("the batch is durable");
        reference.apply_records(&records, &mut Vec::new()).expect("the reference takes the batch");
        digests.insert(reference.seq(), reference.state_digest());
    }
    assert_eq!(durable.read(Engine::state_digest), reference.state_digest());
}

/// Checks every snapshot kept against `digests` (newest first, removing each to load the
/// next); returns their seqs.
fn check_snapshots(dir: &Path, digests: &BTreeMap<u64, [u8; 32]>) -> Vec<u64> {
    let store = SnapshotStore::new(dir);
    let mut checked = Vec::new();
    while let Some(loaded) = store.load_newest_valid().expect("load") {
        let expected = digests.get(&loaded.seq).expect("a snapshot at the end of a batch");
        assert_eq!(&loaded.state_hash, expected, "snapshot {} holds the state at its seq", loaded.seq);
        let restored = Engine::restore(&loaded.body).expect("the body restores");
        assert_eq!((restored.seq(), &restored.state_digest()), (loaded.seq, expected));
        std::fs::remove_file(&loaded.path).expect("remove, to load the one before");
        checked.push(loaded.seq);
    }
    checked
}

#[test]
fn each_periodic_snapshot_holds_the_state_at_its_seq_before_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reference = market(ACCOUNTS, 1 << 50);
    let mut digests = BTreeMap::new();
    let durable = open(dir.path());
    for command in market_commands() {
        durable.execute(0, &command).expect("setup");
    }
    assert_eq!(durable.read(Engine::state_digest), reference.state_digest(), "the reference's market");
    trade(&durable, &mut reference, 0..40, &mut digests);
    // A periodic snapshot that comes due while the one before is still being written waits for
    // a later batch (that thread gives way to everything else: on a busy machine, past the end
    // of this stretch). One taken now, and a batch too short to come due after it, leave the
    // restart a journal tail whatever the timing.
    let (newest_before, _) = durable.snapshot().expect("a snapshot now");
    assert_eq!(newest_before, reference.seq());
    trade(&durable, &mut reference, 40..41, &mut digests);
    durable.close().expect("close");
    assert!(newest_before < reference.seq(), "the restart replays a journal tail after the snapshot");

    let durable = open(dir.path());
    trade(&durable, &mut reference, 41..61, &mut digests);
    durable.close().expect("close");
    let checked = check_snapshots(dir.path(), &digests);
    assert_eq!(checked.len(), SnapshotStore::new(dir.path()).retain, "the newest snapshots kept, each checked");
    assert!(checked[0] > newest_before, "one taken after the restart, by a shadow that replayed the tail");
}

/// The commands that build `common::market(ACCOUNTS, 1 << 50)`.
fn market_commands() -> Vec<Command> {
    let mut commands: Vec<Command> =
        ["USDT", "BTC", "ETH"].map(|name| Command::AddAsset(AssetSpec { name: name.into(), decimals: 8 })).into();
    commands.extend(
        [("BTC-USDT", BTC), ("ETH-USDT", ETH)].map(|(symbol, base)| Command::AddInstrument(spot_spec(symbol, base))),
    );
    for account in 1..=ACCOUNTS {
        for asset in [USDT, BTC, ETH] {
            commands.push(Command::Deposit { account, asset, amount_units: 1 << 50 });
        }
    }
    commands
}
