//! Every limit of the engine, in one place, with the relations between them asserted at
//! compile time. Amount arithmetic is done in `u128` and checked into `u64`, so the bounds
//! below keep every intermediate product far from overflow.

/// Largest price in ticks an order may carry.
pub const PRICE_TICKS_MAX: u64 = 1 << 40;
/// Largest order size in lots.
pub const SIZE_LOTS_MAX: u64 = 1 << 40;
/// Largest fee rate in basis points (10%).
pub const FEE_BPS_MAX: u16 = 1_000;
/// Largest distance of a market order's protection bound from the best price (50%).
pub const MARKET_PROTECTION_BPS_MAX: u16 = 5_000;
/// Largest number of decimals an asset may have.
pub const ASSET_DECIMALS_MAX: u8 = 18;
/// Assets and instruments an engine can hold. The ledger keeps a dense row of balances per
/// account (16 bytes × the number of assets rounded up to a power of two), so a million
/// accounts at this limit take 4 GiB; past that the ledger would want sparse rows.
pub const ASSETS_MAX: usize = 256;
pub const INSTRUMENTS_MAX: usize = 1_024;
/// Orders resting in all books at once; the order slab never grows past this.
pub const ORDERS_LIVE_MAX: usize = 4 << 20;
/// Closed orders kept queryable; the oldest closed order is forgotten first.
pub const ORDERS_CLOSED_RETAINED_MAX: usize = 1 << 18;
/// Accounts the ledger can hold.
pub const ACCOUNTS_MAX: usize = 16 << 20;
/// Bytes of a client order id (OKX allows up to 32 characters).
pub const CLIENT_ORDER_ID_BYTES: usize = 32;
/// Instrument symbol and asset name lengths.
pub const SYMBOL_BYTES_MAX: usize = 32;
pub const ASSET_NAME_BYTES_MAX: usize = 16;
/// The account that receives every fee; no deposits or orders are accepted for it.
pub const FEE_ACCOUNT: u64 = 0;

const _: () = assert!((PRICE_TICKS_MAX as u128) * (SIZE_LOTS_MAX as u128) < (u64::MAX as u128) << 40);
const _: () = assert!(ORDERS_LIVE_MAX < u32::MAX as usize / 2);
const _: () = assert!(ORDERS_CLOSED_RETAINED_MAX < u32::MAX as usize / 2);
const _: () = assert!(ACCOUNTS_MAX < u32::MAX as usize);
const _: () = assert!((FEE_BPS_MAX as u32) < 10_000);
const _: () = assert!((MARKET_PROTECTION_BPS_MAX as u32) < 10_000);
