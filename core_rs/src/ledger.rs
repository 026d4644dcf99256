//! The account ledger: per account and asset, `available` and `frozen` (held by open
//! orders), in minor units.
//!
//! Rules it keeps: balances never go negative (every debit is checked or covered by a hold);
//! the total deposited of each asset stays within `u64`, so no single balance can overflow;
//! the sum over all accounts (the fee account included) of each asset equals what was
//! deposited. Accounts are created by their first deposit; the fee account exists from the
//! start.

use rustc_hash::FxHashMap;

use crate::codec::{Reader, Writer};
use crate::command::AssetSpec;
use crate::limits::{ACCOUNTS_MAX, ASSETS_MAX, ASSET_DECIMALS_MAX, ASSET_NAME_BYTES_MAX, FEE_ACCOUNT};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub available: u64,
    pub frozen: u64,
}

/// An account's position in the ledger's tables (stable for the engine's life).
pub type AccountSlot = u32;

pub const FEE_ACCOUNT_SLOT: AccountSlot = 0;

/// `clone_from` reuses the target's memory (see `Engine`).
#[derive(Debug)]
pub struct Ledger {
    assets: Vec<AssetSpec>,
    deposited_units: Vec<u64>,
    slots: FxHashMap<u64, AccountSlot>,
    account_ids: Vec<u64>,
    /// Every account's balances in one table, `stride` assets per account (a power of two
    /// at least the number of assets), so a balance is one index away from its slot.
    balances: Vec<Balance>,
    stride: usize,
}

const STRIDE_MIN: usize = 8;

impl Clone for Ledger {
    clone_through_clone_from!(Ledger);

    fn clone_from(&mut self, source: &Self) {
        // Every field named, so a new one cannot be left out of the copy.
        let Ledger { assets, deposited_units, slots, account_ids, balances, stride } = source;
        self.assets.clone_from(assets);
        self.deposited_units.clone_from(deposited_units);
        self.slots.clone_from(slots);
        self.account_ids.clone_from(account_ids);
        self.balances.clone_from(balances);
        self.stride = *stride;
    }
}

impl Default for Ledger {
    fn default() -> Self {
        let mut ledger = Ledger {
            assets: Vec::new(),
            deposited_units: Vec::new(),
            slots: FxHashMap::default(),
            account_ids: Vec::new(),
            balances: Vec::new(),
            stride: STRIDE_MIN,
        };
        let fee_slot = ledger.create(FEE_ACCOUNT);
        assert_eq!(fee_slot, FEE_ACCOUNT_SLOT);
        ledger
    }
}

impl Ledger {
    pub fn add_asset(&mut self, spec: AssetSpec) -> Result<u32, String> {
        self.check_asset(&spec)?;
        self.assets.push(spec);
        self.deposited_units.push(0);
        if self.assets.len() > self.stride {
            self.widen(self.stride * 2);
        }
        Ok((self.assets.len() - 1) as u32)
    }

    /// Whether `add_asset` would take this spec.
    pub fn check_asset(&self, spec: &AssetSpec) -> Result<(), String> {
        if spec.name.is_empty() || spec.name.len() > ASSET_NAME_BYTES_MAX {
            return Err(format!("asset name must have 1 to {ASSET_NAME_BYTES_MAX} bytes"));
        }
        if spec.decimals > ASSET_DECIMALS_MAX {
            return Err(format!("asset decimals must be at most {ASSET_DECIMALS_MAX}"));
        }
        if self.asset_id(&spec.name).is_some() {
            return Err(format!("asset {} exists", spec.name));
        }
        if self.assets.len() >= ASSETS_MAX {
            return Err(format!("at most {ASSETS_MAX} assets"));
        }
        Ok(())
    }

    pub fn asset_id(&self, name: &str) -> Option<u32> {
        self.assets.iter().position(|a| a.name == name).map(|i| i as u32)
    }

    pub fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    pub fn has_asset(&self, asset: u32) -> bool {
        (asset as usize) < self.assets.len()
    }

    pub fn deposited_units(&self, asset: u32) -> u64 {
        self.deposited_units[asset as usize]
    }

    pub fn slot(&self, account: u64) -> Option<AccountSlot> {
        self.slots.get(&account).copied()
    }

    pub fn account_id(&self, slot: AccountSlot) -> u64 {
        self.account_ids[slot as usize]
    }

    /// Slots in ascending account id order (the canonical order for hashing and checks).
    pub fn slots_by_account(&self) -> Vec<AccountSlot> {
        let mut slots: Vec<AccountSlot> = (0..self.account_ids.len() as u32).collect();
        slots.sort_unstable_by_key(|&s| self.account_ids[s as usize]);
        slots
    }

    fn create(&mut self, account: u64) -> AccountSlot {
        let slot = self.account_ids.len() as AccountSlot;
        self.account_ids.push(account);
        self.balances.resize(self.balances.len() + self.stride, Balance::default());
        self.slots.insert(account, slot);
        slot
    }

    /// Credits a deposit. Refuses (returns false) a zero amount, a full ledger, or a total
    /// deposited of the asset past `u64`.
    pub fn deposit(&mut self, account: u64, asset: u32, amount_units: u64) -> bool {
        let Some(new_total) = self.deposited_units[asset as usize].checked_add(amount_units) else { return false };
        if amount_units == 0 || (self.slot(account).is_none() && self.account_ids.len() >= ACCOUNTS_MAX) {
            return false;
        }
        self.deposited_units[asset as usize] = new_total;
        let slot = match self.slot(account) {
            Some(slot) => slot,
            None => self.create(account),
        };
        self.balance_mut(slot, asset).available += amount_units;
        true
    }

    pub fn balance(&self, slot: AccountSlot, asset: u32) -> Balance {
        debug_assert!((asset as usize) < self.stride);
        self.balances[slot as usize * self.stride + asset as usize]
    }

    fn balance_mut(&mut self, slot: AccountSlot, asset: u32) -> &mut Balance {
        debug_assert!((asset as usize) < self.stride);
        &mut self.balances[slot as usize * self.stride + asset as usize]
    }

    /// Moves `amount` from available to frozen; false (nothing moved) if not available.
    pub fn freeze(&mut self, slot: AccountSlot, asset: u32, amount_units: u64) -> bool {
        let balance = self.balance_mut(slot, asset);
        if balance.available < amount_units {
            return false;
        }
        balance.available -= amount_units;
        balance.frozen += amount_units;
        true
    }

    /// Moves `amount` from frozen back to available.
    pub fn release(&mut self, slot: AccountSlot, asset: u32, amount_units: u64) {
        let balance = self.balance_mut(slot, asset);
        assert!(balance.frozen >= amount_units, "release of more than is frozen");
        balance.frozen -= amount_units;
        balance.available += amount_units;
    }

    /// Takes `amount` out of frozen (it leaves the account: a fill's payment).
    pub fn spend_frozen(&mut self, slot: AccountSlot, asset: u32, amount_units: u64) {
        let balance = self.balance_mut(slot, asset);
        assert!(balance.frozen >= amount_units, "spend of more than is frozen");
        balance.frozen -= amount_units;
    }

    /// Adds to available (a fill's proceeds or a fee); bounded by the asset's total deposited.
    pub fn credit(&mut self, slot: AccountSlot, asset: u32, amount_units: u64) {
        self.balance_mut(slot, asset).available += amount_units;
    }

    /// Re-lays the table out with room for `stride` assets per account (rare: adding assets).
    fn widen(&mut self, stride: usize) {
        let mut balances = vec![Balance::default(); self.account_ids.len() * stride];
        for (slot, row) in self.balances.chunks_exact(self.stride).enumerate() {
            balances[slot * stride..slot * stride + self.stride].copy_from_slice(row);
        }
        self.balances = balances;
        self.stride = stride;
    }

    pub fn accounts_count(&self) -> usize {
        self.account_ids.len()
    }

    /// Assets, totals deposited, then every account in slot order with its balances.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u32(self.assets.len() as u32);
        for (spec, deposited) in self.assets.iter().zip(&self.deposited_units) {
            w.str(&spec.name);
            w.u8(spec.decimals);
            w.u64(*deposited);
        }
        w.u32(self.account_ids.len() as u32);
        for (slot, account) in self.account_ids.iter().enumerate() {
            w.u64(*account);
            for asset in 0..self.assets.len() as u32 {
                let balance = self.balance(slot as AccountSlot, asset);
                w.u64(balance.available);
                w.u64(balance.frozen);
            }
        }
    }

    /// The ledger `encode` wrote, with every account in the same slot.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Ledger, String> {
        let mut ledger = Ledger::default();
        for _ in 0..r.u32()? {
            let spec = AssetSpec { name: r.str()?, decimals: r.u8()? };
            let asset = ledger.add_asset(spec)?;
            ledger.deposited_units[asset as usize] = r.u64()?;
        }
        let accounts = r.u32()? as usize;
        if accounts == 0 || accounts > ACCOUNTS_MAX {
            return Err(format!("{accounts} accounts"));
        }
        for slot in 0..accounts as AccountSlot {
            let account = r.u64()?;
            if slot == FEE_ACCOUNT_SLOT && account != FEE_ACCOUNT {
                return Err("slot 0 is not the fee account".into());
            }
            if slot != FEE_ACCOUNT_SLOT && (account == FEE_ACCOUNT || ledger.slot(account).is_some()) {
                return Err(format!("account {account} appears twice"));
            }
            if slot != FEE_ACCOUNT_SLOT {
                ledger.create(account);
            }
            for asset in 0..ledger.assets.len() as u32 {
                *ledger.balance_mut(slot, asset) = Balance { available: r.u64()?, frozen: r.u64()? };
            }
        }
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_assets_past_the_row_width_keeps_every_balance() {
        let mut ledger = Ledger::default();
        let asset = |i: usize| AssetSpec { name: format!("A{i}"), decimals: 8 };
        ledger.add_asset(asset(0)).unwrap();
        assert!(ledger.deposit(5, 0, 100));
        assert!(ledger.deposit(6, 0, 200));
        for i in 1..20 {
            ledger.add_asset(asset(i)).unwrap();
            assert!(ledger.deposit(6, i as u32, i as u64));
        }
        let (five, six) = (ledger.slot(5).unwrap(), ledger.slot(6).unwrap());
        assert_eq!(ledger.balance(five, 0), Balance { available: 100, frozen: 0 });
        assert_eq!(ledger.balance(six, 0), Balance { available: 200, frozen: 0 });
        assert!((1..20).all(|i| ledger.balance(six, i).available == u64::from(i)));
        assert!((1..20).all(|i| ledger.balance(five, i) == Balance::default()));
        assert!(ledger.freeze(six, 19, 19) && !ledger.freeze(six, 19, 1));
        assert_eq!(ledger.balance(six, 19), Balance { available: 0, frozen: 19 });
    }
}
