//! The signed requests a gateway has seen within their timestamp window, so that an exact
//! replay is refused (`pyexchange.gateway.auth`): a signature is remembered until it expires.
//!
//! The set is kept in buckets by expiry time, each a hash set of the signatures' XXH3-128.
//! A bucket whose every signature has expired is dropped whole, in one deallocation; nothing is
//! ever deleted one by one, so no table fills with tombstones and none is rebuilt. A new bucket
//! is made as large as the newest one before it, so at a steady rate no table grows either.
//! The Python `OrderedDict` this replaces rebuilt its table of 100,000 signatures every 75,000
//! insertions, holding the event loop 35 ms at REST order entry of 10,000/s (bench/README.md).
//!
//! Keys are XXH3-128 of signatures that were already verified (HMAC-SHA256 under the account's
//! own secret), so clustering them in a table would take grinding HMACs, and a 128-bit
//! collision that refused a fresh request as a replay is beyond any request rate.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::xxh3_128;

#[derive(Debug)]
pub struct SeenSignatures {
    bucket_ms: u64,
    entries_max: usize,
    /// Bucket `k` holds the signatures that expire in `[k * bucket_ms, (k + 1) * bucket_ms)`.
    buckets: BTreeMap<u64, FxHashSet<u128>>,
}

impl SeenSignatures {
    /// At most `entries_max` signatures are remembered: past that the bucket that expires
    /// first is forgotten early, so that memory stays bounded under any load.
    pub fn new(bucket_ms: u64, entries_max: usize) -> Self {
        assert!(bucket_ms > 0 && entries_max > 0, "bucket_ms and entries_max must be over 0");
        SeenSignatures { bucket_ms, entries_max, buckets: BTreeMap::new() }
    }

    /// Whether `signature` is new, and if so remembers it until `expires_ms` (at least; a
    /// bucket goes once all of it has expired). Signatures that expired before `now_ms` are
    /// forgotten first.
    pub fn first_time(&mut self, signature: &[u8], expires_ms: u64, now_ms: u64) -> bool {
        self.forget_expired(now_ms);
        let key = xxh3_128(signature);
        if self.buckets.values().any(|bucket| bucket.contains(&key)) {
            return false;
        }
        while self.len() >= self.entries_max {
            self.buckets.pop_first();
        }
        let index = expires_ms / self.bucket_ms;
        let newest_len = self.buckets.last_key_value().map_or(0, |(_, bucket)| bucket.len());
        let bucket = self.buckets.entry(index).or_insert_with(|| {
            FxHashSet::with_capacity_and_hasher(newest_len.min(self.entries_max), Default::default())
        });
        bucket.insert(key);
        true
    }

    /// Signatures remembered now (a sum over the few live buckets).
    fn len(&self) -> usize {
        self.buckets.values().map(FxHashSet::len).sum()
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(entry) = self.buckets.first_entry() {
            let expired_by_ms = (entry.key() + 1).saturating_mul(self.bucket_ms);
            if expired_by_ms > now_ms {
                break;
            }
            entry.remove();
        }
    }

    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        self.buckets.values().map(|bucket| bucket.capacity()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// The obvious model: every signature with the end of its expiry's bucket, forgotten then.
    struct Model {
        bucket_ms: u64,
        remembered_until_ms: HashMap<Vec<u8>, u64>,
    }

    impl Model {
        fn first_time(&mut self, signature: &[u8], expires_ms: u64, now_ms: u64) -> bool {
            self.remembered_until_ms.retain(|_, &mut until_ms| until_ms > now_ms);
            if self.remembered_until_ms.contains_key(signature) {
                return false;
            }
            let until_ms = (expires_ms / self.bucket_ms + 1) * self.bucket_ms;
            assert!(until_ms > expires_ms && until_ms - expires_ms <= self.bucket_ms);
            self.remembered_until_ms.insert(signature.to_vec(), until_ms);
            true
        }
    }

    #[test]
    fn a_signature_is_refused_until_it_expires_and_its_bucket_goes() {
        let mut seen = SeenSignatures::new(1_000, 100);
        assert!(seen.first_time(b"sig-a", 30_500, 500));
        assert!(!seen.first_time(b"sig-a", 30_600, 600));
        assert!(seen.first_time(b"sig-b", 30_600, 600));
        assert!(!seen.first_time(b"sig-a", 60_000, 30_500), "still within its expiry");
        assert!(!seen.first_time(b"sig-a", 60_000, 30_999), "its bucket lasts until 31,000");
        assert_eq!(seen.len(), 2);
        assert!(seen.first_time(b"sig-a", 61_000, 31_000), "its bucket has gone");
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn past_the_maximum_the_bucket_that_expires_first_goes() {
        let mut seen = SeenSignatures::new(10, 4);
        for (i, expires_ms) in [(0u8, 100), (1, 105), (2, 200), (3, 300)] {
            assert!(seen.first_time(&[i], expires_ms, 0));
        }
        assert!(seen.first_time(&[4], 300, 0));
        assert_eq!(seen.len(), 3, "signatures 0 and 1 (bucket 10) went");
        assert!(seen.first_time(&[0], 100, 0), "forgotten early");
        assert!(!seen.first_time(&[2], 200, 0), "remembered");
    }

    #[test]
    fn a_new_bucket_is_as_large_as_the_newest_so_a_steady_rate_grows_no_table() {
        let mut seen = SeenSignatures::new(1_000, 1 << 20);
        let per_bucket = 50_000u32;
        for i in 0..per_bucket {
            assert!(seen.first_time(&i.to_le_bytes(), 1_500, 0));
        }
        assert!(seen.first_time(&per_bucket.to_le_bytes(), 2_500, 0));
        let capacity = seen.capacities()[1];
        assert!(capacity >= per_bucket as usize);
        for i in per_bucket + 1..2 * per_bucket {
            assert!(seen.first_time(&i.to_le_bytes(), 2_500, 0));
        }
        assert_eq!(seen.capacities()[1], capacity, "the second bucket's table never grew");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Signatures repeat, time moves on, expiries lie up to two windows ahead (a timestamp
        /// may be a window in the future): the set answers as the model does, whatever the
        /// bucket size; and a set with a small maximum never holds more.
        #[test]
        fn answers_as_the_model_does(
            bucket_ms in 1u64..50,
            entries_max in 1usize..12,
            steps in prop::collection::vec((0u8..24, 0u64..20, 0u64..120), 1..400),
        ) {
            let mut seen = SeenSignatures::new(bucket_ms, usize::MAX);
            let mut bounded = SeenSignatures::new(bucket_ms, entries_max);
            let mut model = Model { bucket_ms, remembered_until_ms: HashMap::new() };
            let mut now_ms = 0u64;
            for (signature, advance_ms, ahead_ms) in steps {
                now_ms += advance_ms;
                let expires_ms = now_ms + ahead_ms;
                let expected = model.first_time(&[signature], expires_ms, now_ms);
                prop_assert_eq!(seen.first_time(&[signature], expires_ms, now_ms), expected);
                prop_assert_eq!(seen.len(), model.remembered_until_ms.len());
                bounded.first_time(&[signature], expires_ms, now_ms);
                prop_assert!(bounded.len() <= entries_max);
            }
        }
    }
}
