//! Fixed-size records for the batch path: commands in, events out. The layouts are
//! `#[repr(C)]` with no implicit padding, so a numpy structured array with the same fields
//! (`pyexchange/wire.py`) is the same bytes. Records are validated whole before a batch is
//! applied, so a bad record refuses the batch with nothing applied.

use std::fmt;

use crate::codes::{EventKind, MarketState, OrderType, Side, Stp};
use crate::command::{AmendOrder, AssetSpec, ClientOrderId, Command, InstrumentSpec, PlaceOrder};

pub const COMMAND_KIND_PLACE: u8 = 1;
pub const COMMAND_KIND_CANCEL: u8 = 2;
pub const COMMAND_KIND_AMEND: u8 = 3;
pub const COMMAND_KIND_CANCEL_ALL: u8 = 4;
pub const COMMAND_KIND_DEPOSIT: u8 = 5;
/// A market-state move: `instrument`, the `MarketState` code in `order_type`, and the auction
/// band in basis points in `size_lots`.
pub const COMMAND_KIND_SET_MARKET_STATE: u8 = 8;
/// `instrument` value of a cancel-all over every instrument.
pub const ALL_INSTRUMENTS: u32 = u32::MAX;
/// `side` of an event that concerns no side.
pub const SIDE_NONE: u8 = u8::MAX;

/// One trading command of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CommandRecord {
    pub ts_ns: i64,
    pub account: u64,
    pub order_id: u64,
    pub price_ticks: u64,
    /// Order size, amend's new total size, or deposit amount in minor units.
    pub size_lots: u64,
    /// Instrument id, or asset id for a deposit.
    pub instrument: u32,
    pub kind: u8,
    pub side: u8,
    pub order_type: u8,
    pub stp: u8,
    pub client_order_id: ClientOrderId,
}

/// One event. Unused fields are zero. The market events use the fields so: `market_state`
/// has the instrument's state code in `order_id`, the reference price in `price_ticks`, and
/// `auction_price_outside_band` as its reason when a move to continuous trading was refused;
/// `auction` has the indicative price in `price_ticks` (0: nothing would execute), the
/// executable lots in `size_lots`, the imbalance in `order_id` and the surplus side in `side`;
/// `uncross` has the auction price, the lots that traded and the surplus side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct EventRecord {
    pub seq: u64,
    pub ts_ns: i64,
    /// The order the event is about; for a fill, the taker.
    pub order_id: u64,
    pub account: u64,
    pub maker_order_id: u64,
    pub maker_account: u64,
    pub price_ticks: u64,
    /// Size of the order, fill, canceled remainder, or deposit amount in minor units.
    pub size_lots: u64,
    pub taker_fee: u64,
    pub maker_fee: u64,
    /// Instrument id, or asset id for a deposit.
    pub instrument: u32,
    pub kind: u8,
    pub reason: u8,
    /// `Side` code, or `SIDE_NONE` for an event about no side (deposits, unknown orders).
    pub side: u8,
    /// 1 when `instrument` holds an asset id (deposits), else 0.
    pub is_asset: u8,
}

pub const COMMAND_RECORD_BYTES: usize = std::mem::size_of::<CommandRecord>();
pub const EVENT_RECORD_BYTES: usize = std::mem::size_of::<EventRecord>();
const _: () = assert!(COMMAND_RECORD_BYTES == 80);
const _: () = assert!(EVENT_RECORD_BYTES == 88);

/// A record that is not a valid command; `index` is its position in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub index: usize,
    pub message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command record {}: {}", self.index, self.message)
    }
}

impl std::error::Error for WireError {}

fn code<T>(value: u8, what: &str, parse: fn(u8) -> Option<T>) -> Result<T, String> {
    parse(value).ok_or_else(|| format!("unknown {what} code {value}"))
}

impl CommandRecord {
    /// Whether `decode` would succeed, without building the command (the batch's first pass).
    pub fn check(&self) -> Result<(), String> {
        match self.kind {
            COMMAND_KIND_PLACE => {
                code(self.side, "side", Side::from_code)?;
                code(self.order_type, "order type", OrderType::from_code)?;
                code(self.stp, "stp", Stp::from_code).map(drop)
            }
            COMMAND_KIND_CANCEL | COMMAND_KIND_AMEND | COMMAND_KIND_CANCEL_ALL | COMMAND_KIND_DEPOSIT => Ok(()),
            COMMAND_KIND_SET_MARKET_STATE => self.market_state_move().map(drop),
            other => Err(format!("unknown command kind {other}")),
        }
    }

    /// A market-state record's state and auction band (bps).
    fn market_state_move(&self) -> Result<(MarketState, u16), String> {
        let state = code(self.order_type, "market state", MarketState::from_code)?;
        match u16::try_from(self.size_lots) {
            Ok(band) if band <= 10_000 => Ok((state, band)),
            _ => Err(format!("auction band of {} bps is over 10000", self.size_lots)),
        }
    }

    /// The command this record encodes.
    pub fn decode(&self) -> Result<Command, String> {
        Ok(match self.kind {
            COMMAND_KIND_PLACE => Command::Place(PlaceOrder {
                account: self.account,
                instrument: self.instrument,
                side: code(self.side, "side", Side::from_code)?,
                order_type: code(self.order_type, "order type", OrderType::from_code)?,
                stp: code(self.stp, "stp", Stp::from_code)?,
                price_ticks: self.price_ticks,
                size_lots: self.size_lots,
                client_order_id: self.client_order_id,
            }),
            COMMAND_KIND_CANCEL => {
                Command::Cancel { account: self.account, instrument: self.instrument, order_id: self.order_id }
            }
            COMMAND_KIND_AMEND => Command::Amend(AmendOrder {
                account: self.account,
                instrument: self.instrument,
                order_id: self.order_id,
                new_price_ticks: self.price_ticks,
                new_size_lots: self.size_lots,
            }),
            COMMAND_KIND_CANCEL_ALL => Command::CancelAll {
                account: self.account,
                instrument: (self.instrument != ALL_INSTRUMENTS).then_some(self.instrument),
            },
            COMMAND_KIND_DEPOSIT => {
                Command::Deposit { account: self.account, asset: self.instrument, amount_units: self.size_lots }
            }
            COMMAND_KIND_SET_MARKET_STATE => {
                let (state, auction_band_bps) = self.market_state_move()?;
                Command::SetMarketState { instrument: self.instrument, state, auction_band_bps }
            }
            other => return Err(format!("unknown command kind {other}")),
        })
    }
}

/// Plain records: `repr(C)`, made only of integers and byte arrays, with no padding, so that
/// every bit pattern is a valid value.
trait PlainRecord: Copy {}
impl PlainRecord for CommandRecord {}
impl PlainRecord for EventRecord {}

/// Reinterprets whole records' bytes, copying so the input needs no alignment; None when the
/// bytes are not a whole number of records.
fn plain_records<T: PlainRecord>(bytes: &[u8]) -> Option<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    let count = bytes.len() / size;
    let mut records = Vec::<T>::with_capacity(count);
    // SAFETY: every bit pattern is a valid T (`PlainRecord`). The capacity was reserved for
    // `count` records and exactly that many records' bytes are copied before set_len.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), records.as_mut_ptr().cast::<u8>(), bytes.len());
        records.set_len(count);
    }
    Some(records)
}

/// Reinterprets bytes as command records, copying so the input needs no alignment.
pub fn command_records(bytes: &[u8]) -> Result<Vec<CommandRecord>, WireError> {
    plain_records(bytes).ok_or_else(|| WireError {
        index: bytes.len() / COMMAND_RECORD_BYTES,
        message: format!("batch of {} bytes is not a whole number of {COMMAND_RECORD_BYTES}-byte records", bytes.len()),
    })
}

/// Reinterprets bytes as event records (a batch's, as `event_bytes` gave them), copying so the
/// input needs no alignment. Each record's kind is checked.
pub fn event_records(bytes: &[u8]) -> Result<Vec<EventRecord>, String> {
    let records: Vec<EventRecord> = plain_records(bytes).ok_or_else(|| {
        format!("events of {} bytes are not a whole number of {EVENT_RECORD_BYTES}-byte records", bytes.len())
    })?;
    match records.iter().position(|r| EventKind::from_code(r.kind).is_none()) {
        Some(index) => Err(format!("event record {index}: unknown event kind {}", records[index].kind)),
        None => Ok(records),
    }
}

/// The bytes of command records (a Raft entry's batch), in one piece.
pub fn command_bytes(records: &[CommandRecord]) -> &[u8] {
    // SAFETY: CommandRecord is repr(C) integers and bytes with no padding (size asserted
    // above); any initialized value is valid as bytes, and the length covers exactly the slice.
    unsafe { std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), std::mem::size_of_val(records)) }
}

/// The bytes of event records, for handing a batch's events to numpy.
pub fn event_bytes(events: &[EventRecord]) -> &[u8] {
    // SAFETY: EventRecord is repr(C) integers with no padding; any initialized value is
    // valid as bytes, and the length covers exactly the slice.
    unsafe { std::slice::from_raw_parts(events.as_ptr().cast::<u8>(), std::mem::size_of_val(events)) }
}

impl EventRecord {
    pub fn new(seq: u64, ts_ns: i64, kind: EventKind) -> Self {
        EventRecord { seq, ts_ns, kind: kind.code(), ..EventRecord::default() }
    }

    pub fn kind(&self) -> EventKind {
        EventKind::from_code(self.kind).expect("events are built from EventKind")
    }
}

// ---- commands as the journal stores them ----

pub const COMMAND_KIND_ADD_ASSET: u8 = 6;
pub const COMMAND_KIND_ADD_INSTRUMENT: u8 = 7;

impl CommandRecord {
    /// A record of `kind` stamped `ts_ns` with every other field zero.
    fn header(ts_ns: i64, kind: u8) -> CommandRecord {
        CommandRecord {
            ts_ns,
            account: 0,
            order_id: 0,
            price_ticks: 0,
            size_lots: 0,
            instrument: 0,
            kind,
            side: 0,
            order_type: 0,
            stp: 0,
            client_order_id: crate::command::NO_CLIENT_ORDER_ID,
        }
    }

    /// The record of a trading command stamped `ts_ns`; None for a configuration command.
    pub fn from_command(ts_ns: i64, command: &Command) -> Option<CommandRecord> {
        let blank = CommandRecord::header(ts_ns, 0);
        Some(match *command {
            Command::AddAsset(_) | Command::AddInstrument(_) => return None,
            Command::Deposit { account, asset, amount_units } => CommandRecord {
                account,
                instrument: asset,
                size_lots: amount_units,
                kind: COMMAND_KIND_DEPOSIT,
                ..blank
            },
            Command::Place(p) => CommandRecord {
                account: p.account,
                instrument: p.instrument,
                price_ticks: p.price_ticks,
                size_lots: p.size_lots,
                kind: COMMAND_KIND_PLACE,
                side: p.side.code(),
                order_type: p.order_type.code(),
                stp: p.stp.code(),
                client_order_id: p.client_order_id,
                ..blank
            },
            Command::Cancel { account, instrument, order_id } => {
                CommandRecord { account, instrument, order_id, kind: COMMAND_KIND_CANCEL, ..blank }
            }
            Command::Amend(a) => CommandRecord {
                account: a.account,
                instrument: a.instrument,
                order_id: a.order_id,
                price_ticks: a.new_price_ticks,
                size_lots: a.new_size_lots,
                kind: COMMAND_KIND_AMEND,
                ..blank
            },
            Command::CancelAll { account, instrument } => CommandRecord {
                account,
                instrument: instrument.unwrap_or(ALL_INSTRUMENTS),
                kind: COMMAND_KIND_CANCEL_ALL,
                ..blank
            },
            Command::SetMarketState { instrument, state, auction_band_bps } => CommandRecord {
                instrument,
                order_type: state.code(),
                size_lots: u64::from(auction_band_bps),
                kind: COMMAND_KIND_SET_MARKET_STATE,
                ..blank
            },
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) integers and bytes with no padding (size asserted above).
        unsafe { std::slice::from_raw_parts((self as *const CommandRecord).cast::<u8>(), COMMAND_RECORD_BYTES) }
    }

    /// The record in the first `COMMAND_RECORD_BYTES` of `bytes` (any alignment).
    pub fn read(bytes: &[u8]) -> Option<CommandRecord> {
        let bytes = bytes.get(..COMMAND_RECORD_BYTES)?;
        // SAFETY: exactly COMMAND_RECORD_BYTES bytes, read unaligned; every bit pattern is a
        // valid CommandRecord.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CommandRecord>()) })
    }
}

/// A command stamped `ts_ns` as a journal payload: a trading command is its 80-byte record;
/// a configuration command is a record carrying only its kind and timestamp, followed by
/// its fields.
pub fn encode_command(ts_ns: i64, command: &Command, out: &mut Vec<u8>) {
    if let Some(record) = CommandRecord::from_command(ts_ns, command) {
        out.extend_from_slice(record.as_bytes());
        return;
    }
    let kind = match command {
        Command::AddAsset(_) => COMMAND_KIND_ADD_ASSET,
        _ => COMMAND_KIND_ADD_INSTRUMENT,
    };
    let header = CommandRecord::header(ts_ns, kind);
    let mut w = crate::codec::Writer { bytes: std::mem::take(out) };
    w.raw(header.as_bytes());
    match command {
        Command::AddAsset(spec) => {
            w.str(&spec.name);
            w.u8(spec.decimals);
        }
        Command::AddInstrument(spec) => encode_instrument(&mut w, spec),
        _ => unreachable!("trading commands have records"),
    }
    *out = w.bytes;
}

/// The timestamp and command of a journal payload.
pub fn decode_command(payload: &[u8]) -> Result<(i64, Command), String> {
    let record = CommandRecord::read(payload)
        .ok_or_else(|| format!("payload of {} bytes is shorter than a command record", payload.len()))?;
    let mut r = crate::codec::Reader::new(&payload[COMMAND_RECORD_BYTES..]);
    let command = match record.kind {
        COMMAND_KIND_ADD_ASSET => Command::AddAsset(AssetSpec { name: r.str()?, decimals: r.u8()? }),
        COMMAND_KIND_ADD_INSTRUMENT => Command::AddInstrument(decode_instrument(&mut r)?),
        _ => record.decode()?,
    };
    r.finish()?;
    Ok((record.ts_ns, command))
}

pub(crate) fn encode_instrument(w: &mut crate::codec::Writer, spec: &InstrumentSpec) {
    w.str(&spec.symbol);
    w.u32(spec.base_asset);
    w.u32(spec.quote_asset);
    w.u64(spec.lot_units);
    w.u64(spec.quote_units_per_tick_lot);
    w.u64(spec.min_size_lots);
    w.u16(spec.maker_fee_bps);
    w.u16(spec.taker_fee_bps);
    w.u16(spec.market_protection_bps);
}

pub(crate) fn decode_instrument(r: &mut crate::codec::Reader<'_>) -> Result<InstrumentSpec, String> {
    Ok(InstrumentSpec {
        symbol: r.str()?,
        base_asset: r.u32()?,
        quote_asset: r.u32()?,
        lot_units: r.u64()?,
        quote_units_per_tick_lot: r.u64()?,
        min_size_lots: r.u64()?,
        maker_fee_bps: r.u16()?,
        taker_fee_bps: r.u16()?,
        market_protection_bps: r.u16()?,
    })
}
