//! Instruments and the integer arithmetic of their units: notional, fees (rounded up, so the
//! exchange never pays out a fraction it did not receive) and the per-lot hold of a buy order.

use crate::command::InstrumentSpec;
use crate::limits::{FEE_BPS_MAX, MARKET_PROTECTION_BPS_MAX, PRICE_TICKS_MAX, SYMBOL_BYTES_MAX};

const BPS_PER_UNIT: u128 = 10_000;

#[derive(Clone, Debug)]
pub struct Instrument {
    pub spec: InstrumentSpec,
}

impl Instrument {
    /// Checks a spec's own bounds; the engine checks that its assets exist.
    pub fn new(spec: InstrumentSpec) -> Result<Self, String> {
        if spec.symbol.is_empty() || spec.symbol.len() > SYMBOL_BYTES_MAX {
            return Err(format!("symbol must have 1 to {SYMBOL_BYTES_MAX} bytes"));
        }
        if spec.lot_units == 0 || spec.quote_units_per_tick_lot == 0 || spec.min_size_lots == 0 {
            return Err("lot_units, quote_units_per_tick_lot and min_size_lots must be > 0".into());
        }
        if spec.maker_fee_bps > FEE_BPS_MAX || spec.taker_fee_bps > FEE_BPS_MAX {
            return Err(format!("fees must be at most {FEE_BPS_MAX} bps"));
        }
        if spec.market_protection_bps > MARKET_PROTECTION_BPS_MAX {
            return Err(format!("market protection must be at most {MARKET_PROTECTION_BPS_MAX} bps"));
        }
        if spec.base_asset == spec.quote_asset {
            return Err("base and quote assets must differ".into());
        }
        if per_lot_hold_units(&spec, 1).is_none() {
            return Err("units too large: a one-lot order at one tick overflows".into());
        }
        Ok(Instrument { spec })
    }

    /// Quote units of `size_lots` at `price_ticks` (exact; the limits keep it in range).
    pub fn notional_units(&self, price_ticks: u64, size_lots: u64) -> u128 {
        u128::from(price_ticks) * u128::from(size_lots) * u128::from(self.spec.quote_units_per_tick_lot)
    }

    /// The quote hold per lot of a buy order at `limit_ticks`, or `None` past `u64` (such a
    /// price is refused as `instrument_price_invalid`).
    pub fn buy_hold_per_lot(&self, limit_ticks: u64) -> Option<u64> {
        per_lot_hold_units(&self.spec, limit_ticks)
    }

    /// The protection bound of a market order against the opposite best price.
    pub fn market_bound_ticks(&self, is_buy: bool, opposite_best_ticks: u64) -> u64 {
        let best = u128::from(opposite_best_ticks);
        let bps = u128::from(self.spec.market_protection_bps);
        if is_buy {
            let bound = best * (BPS_PER_UNIT + bps) / BPS_PER_UNIT;
            bound.min(u128::from(PRICE_TICKS_MAX)) as u64
        } else {
            let bound = (best * (BPS_PER_UNIT - bps)).div_ceil(BPS_PER_UNIT);
            bound.max(1) as u64
        }
    }
}

/// `ceil(notional × bps / 10000)`. The common case stays in `u64`, where dividing by the
/// constant is a multiply; `u128` division is a library call several times slower.
#[inline]
pub fn fee_units(notional_units: u128, fee_bps: u16) -> u128 {
    if let Some(scaled) = u64::try_from(notional_units).ok().and_then(|n| n.checked_mul(u64::from(fee_bps))) {
        return u128::from(scaled.div_ceil(BPS_PER_UNIT as u64));
    }
    (notional_units * u128::from(fee_bps)).div_ceil(BPS_PER_UNIT)
}

fn per_lot_hold_units(spec: &InstrumentSpec, limit_ticks: u64) -> Option<u64> {
    let notional = u128::from(limit_ticks) * u128::from(spec.quote_units_per_tick_lot);
    let fee_bps = spec.maker_fee_bps.max(spec.taker_fee_bps);
    u64::try_from(notional + fee_units(notional, fee_bps)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc_usdt(maker_fee_bps: u16, taker_fee_bps: u16) -> Instrument {
        // tick 0.1 USDT, lot 0.001 BTC, 8-decimal assets: a tick-lot is 10,000 USDT units.
        Instrument::new(InstrumentSpec {
            symbol: "BTC-USDT".into(),
            base_asset: 1,
            quote_asset: 0,
            lot_units: 100_000,
            quote_units_per_tick_lot: 10_000,
            min_size_lots: 1,
            maker_fee_bps,
            taker_fee_bps,
            market_protection_bps: 500,
        })
        .expect("valid spec")
    }

    #[test]
    fn fees_round_up_to_the_next_unit() {
        assert_eq!(fee_units(10_000, 5), 5);
        assert_eq!(fee_units(10_001, 5), 6); // 5.0005 → 6
        assert_eq!(fee_units(1, 1), 1);
        assert_eq!(fee_units(0, 1_000), 0);
        assert_eq!(fee_units(u128::from(u64::MAX), 1_000), u128::from(u64::MAX).div_ceil(10));
    }

    #[test]
    fn buy_hold_per_lot_covers_notional_and_the_larger_fee() {
        let inst = btc_usdt(2, 5);
        // 30000.1 USDT × 0.001 = 30.0001 USDT = 3,000,010,000 units; 5 bps of it, rounded up.
        assert_eq!(inst.buy_hold_per_lot(300_001), Some(3_000_010_000 + 1_500_005));
        let maker_heavier = btc_usdt(7, 5);
        assert_eq!(maker_heavier.buy_hold_per_lot(300_001), Some(3_000_010_000 + 2_100_007));
        assert_eq!(inst.buy_hold_per_lot(u64::MAX / 1_000), None);
    }

    #[test]
    fn market_bound_is_the_protection_distance_from_the_opposite_best() {
        let inst = btc_usdt(0, 0);
        assert_eq!(inst.market_bound_ticks(true, 300_000), 315_000);
        assert_eq!(inst.market_bound_ticks(false, 300_000), 285_000);
        assert_eq!(inst.market_bound_ticks(true, 3), 3); // floor: never a tick past 5%
        assert_eq!(inst.market_bound_ticks(false, 3), 3); // ceil
        assert_eq!(inst.market_bound_ticks(false, 1), 1);
    }

    #[test]
    fn specs_out_of_bounds_are_refused() {
        let spec = btc_usdt(0, 0).spec;
        assert!(Instrument::new(InstrumentSpec { taker_fee_bps: 1_001, ..spec.clone() }).is_err());
        assert!(Instrument::new(InstrumentSpec { lot_units: 0, ..spec.clone() }).is_err());
        assert!(Instrument::new(InstrumentSpec { quote_asset: 1, ..spec.clone() }).is_err());
        assert!(Instrument::new(InstrumentSpec { symbol: String::new(), ..spec }).is_err());
    }
}
