//! A set-associative cache whose lookups take no lock and write nothing shared.
//!
//! Each set has a sequence counter: writers (fills, invalidations) make it odd while they
//! change the set and even again when done; readers copy the set's words between two reads
//! of the counter and retry if it moved. Every word is an atomic, so the scheme needs no
//! `unsafe`. An entry is `K` key words and `V` value words plus one metadata word.
//!
//! Fills carry the invalidation epoch their walk started in; a fill whose epoch is stale
//! is dropped under the set lock, so a walk that raced with an invalidation can never
//! re-insert what the invalidation removed (see [`SeqCache::insert`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::Replacement;

/// Metadata bit: the slot holds an entry.
const VALID: u64 = 1;
/// Metadata bit: the entry was hit since the clock hand last passed it.
const REFERENCED: u64 = 2;
/// Metadata bits 63:2 count the writes of the slot (fills and drops), so a reader that
/// remembers a slot's metadata knows later whether it still holds the same entry.
const GENERATION: u64 = 4;

/// Where an entry sits and which generation it was: enough to check later, without a
/// lookup, that the entry is still cached unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    /// Slot number (set × ways + way).
    pub(crate) index: u64,
    /// The slot's metadata without the replacement bit.
    pub(crate) meta: u64,
}

/// The metadata word after one more write, valid or not.
fn next_generation(meta: u64, valid: bool) -> u64 {
    ((meta & !(VALID | REFERENCED)).wrapping_add(GENERATION)) | valid as u64
}

/// Per-set synchronisation word and replacement state, padded to its own cache line so
/// readers of one set never share a line with writers of another.
#[repr(align(64))]
struct SetHeader {
    seq: AtomicU32,
    /// Next victim for the clock and FIFO policies.
    hand: AtomicU32,
}

/// A set-associative cache of `K`-word keys and `V`-word values.
pub(crate) struct SeqCache<const K: usize, const V: usize> {
    headers: Box<[SetHeader]>,
    /// Per slot: one metadata word, K key words, V value words.
    words: Box<[AtomicU64]>,
    set_mask: u64,
    ways: usize,
    policy: Replacement,
    /// xorshift state for the random policy.
    rng: AtomicU64,
    /// Bit n set: an entry of kind n (a page size, a level: the caller's choice) was
    /// inserted at some point. Lookups skip kinds never inserted; it is never cleared, so
    /// it can only cost a useless probe, never hide an entry.
    kinds: AtomicU64,
}

impl<const K: usize, const V: usize> SeqCache<K, V> {
    const SLOT_WORDS: usize = 1 + K + V;

    /// A cache of `sets` sets (a power of two) of `ways` entries each.
    pub(crate) fn new(sets: usize, ways: usize, policy: Replacement) -> Self {
        let sets = sets.max(1).next_power_of_two();
        let ways = ways.max(1);
        Self {
            headers: (0..sets)
                .map(|_| SetHeader {
                    seq: AtomicU32::new(0),
                    hand: AtomicU32::new(0),
                })
                .collect(),
            words: (0..sets * ways * Self::SLOT_WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            set_mask: sets as u64 - 1,
            ways,
            policy,
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            kinds: AtomicU64::new(0),
        }
    }

    fn slot(&self, set: usize, way: usize) -> &[AtomicU64] {
        let start = (set * self.ways + way) * Self::SLOT_WORDS;
        &self.words[start..start + Self::SLOT_WORDS]
    }

    fn set_of(&self, key: &[u64; K]) -> usize {
        (hash(key) & self.set_mask) as usize
    }

    /// True when an entry of `kind` (0..64) may be cached.
    #[inline]
    pub(crate) fn may_hold(&self, kind: u32) -> bool {
        self.kinds.load(Ordering::Relaxed) & (1 << kind) != 0
    }

    /// [`SeqCache::insert`] of an entry of `kind`, which lookups check with
    /// [`SeqCache::may_hold`].
    pub(crate) fn insert_kind(
        &self,
        key: &[u64; K],
        value: &[u64; V],
        kind: u32,
        still_valid: impl FnOnce() -> bool,
    ) -> bool {
        if !self.may_hold(kind) {
            self.kinds.fetch_or(1 << kind, Ordering::Relaxed);
        }
        self.insert(key, value, still_valid)
    }

    /// The value cached under `key`, if any.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u64; K]) -> Option<[u64; V]> {
        self.lookup_ref(key).map(|(value, _)| value)
    }

    /// The value cached under `key` and where it sits, if any.
    #[inline]
    pub(crate) fn lookup_ref(&self, key: &[u64; K]) -> Option<([u64; V], SlotRef)> {
        let set = self.set_of(key);
        let header = &self.headers[set];
        loop {
            let before = header.seq.load(Ordering::Acquire);
            if before & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let found = self.scan(set, key);
            fence(Ordering::Acquire);
            if header.seq.load(Ordering::Relaxed) == before {
                return found.map(|(slot, meta, value)| {
                    self.touch_meta(&self.words[slot * Self::SLOT_WORDS], meta);
                    (
                        value,
                        SlotRef {
                            index: slot as u64,
                            meta: meta & !REFERENCED,
                        },
                    )
                });
            }
        }
    }

    /// True when the slot `r` names still holds the entry it named.
    #[inline]
    pub(crate) fn still_cached(&self, r: SlotRef) -> bool {
        let word = (r.index as usize)
            .checked_mul(Self::SLOT_WORDS)
            .and_then(|i| self.words.get(i));
        word.is_some_and(|meta| meta.load(Ordering::Acquire) & !REFERENCED == r.meta)
    }

    /// Count a hit on the entry `r` names, for the replacement policy.
    #[inline]
    pub(crate) fn touch(&self, r: SlotRef) {
        if let Some(meta) = self.words.get(r.index as usize * Self::SLOT_WORDS) {
            self.touch_meta(meta, meta.load(Ordering::Relaxed));
        }
    }

    /// Find `key` in `set`: its slot number, metadata and a copy of its value.
    #[inline(always)]
    fn scan(&self, set: usize, key: &[u64; K]) -> Option<(usize, u64, [u64; V])> {
        let first = set * self.ways;
        let start = first * Self::SLOT_WORDS;
        let words = &self.words[start..start + self.ways * Self::SLOT_WORDS];
        for (way, slot) in words.chunks_exact(Self::SLOT_WORDS).enumerate() {
            // The first key word differs for almost every other entry: test it first.
            if slot[1].load(Ordering::Relaxed) != key[0] {
                continue;
            }
            let meta = slot[0].load(Ordering::Relaxed);
            if meta & VALID == 0 {
                continue;
            }
            let mut same = true;
            for i in 1..K {
                same &= slot[1 + i].load(Ordering::Relaxed) == key[i];
            }
            if !same {
                continue;
            }
            let mut value = [0u64; V];
            for (i, v) in value.iter_mut().enumerate() {
                *v = slot[1 + K + i].load(Ordering::Relaxed);
            }
            return Some((first + way, meta, value));
        }
        None
    }

    /// Mark a hit for the clock policy: a write only when the bit is not yet set, so a hot
    /// entry costs its readers nothing.
    #[inline]
    fn touch_meta(&self, meta: &AtomicU64, seen: u64) {
        if self.policy == Replacement::Clock && seen & REFERENCED == 0 {
            meta.fetch_or(REFERENCED, Ordering::Relaxed);
        }
    }

    fn lock(&self, set: usize) -> u32 {
        let seq = &self.headers[set].seq;
        loop {
            let current = seq.load(Ordering::Relaxed);
            if current & 1 == 0
                && seq
                    .compare_exchange_weak(
                        current,
                        current + 1,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                fence(Ordering::Release);
                return current + 1;
            }
            std::hint::spin_loop();
        }
    }

    fn unlock(&self, set: usize, locked: u32) {
        self.headers[set]
            .seq
            .store(locked.wrapping_add(1), Ordering::Release);
    }

    /// Insert `value` under `key`, replacing an existing entry with the same key or a
    /// victim chosen by the policy. `still_valid` runs under the set lock; the fill is
    /// dropped (returns false) when it says the walk raced with an invalidation.
    pub(crate) fn insert(
        &self,
        key: &[u64; K],
        value: &[u64; V],
        still_valid: impl FnOnce() -> bool,
    ) -> bool {
        let set = self.set_of(key);
        let locked = self.lock(set);
        if !still_valid() {
            self.unlock(set, locked);
            return false;
        }
        let way = self.choose_way(set, key);
        let slot = self.slot(set, way);
        for (i, k) in key.iter().enumerate() {
            slot[1 + i].store(*k, Ordering::Relaxed);
        }
        for (i, v) in value.iter().enumerate() {
            slot[1 + K + i].store(*v, Ordering::Relaxed);
        }
        let meta = slot[0].load(Ordering::Relaxed);
        slot[0].store(next_generation(meta, true), Ordering::Release);
        self.unlock(set, locked);
        true
    }

    /// The way to fill: the entry with the same key, else a free way, else the victim.
    fn choose_way(&self, set: usize, key: &[u64; K]) -> usize {
        let mut free = None;
        for way in 0..self.ways {
            let slot = self.slot(set, way);
            let meta = slot[0].load(Ordering::Relaxed);
            if meta & VALID == 0 {
                free.get_or_insert(way);
            } else if (0..K).all(|i| slot[1 + i].load(Ordering::Relaxed) == key[i]) {
                return way;
            }
        }
        if let Some(way) = free {
            return way;
        }
        let hand = &self.headers[set].hand;
        match self.policy {
            Replacement::Fifo => {
                let way = hand.load(Ordering::Relaxed) as usize % self.ways;
                hand.store(((way + 1) % self.ways) as u32, Ordering::Relaxed);
                way
            }
            Replacement::Random => (self.next_random() % self.ways as u64) as usize,
            Replacement::Clock => loop {
                let way = hand.load(Ordering::Relaxed) as usize % self.ways;
                hand.store(((way + 1) % self.ways) as u32, Ordering::Relaxed);
                let meta = &self.slot(set, way)[0];
                if meta.load(Ordering::Relaxed) & REFERENCED == 0 {
                    break way;
                }
                meta.fetch_and(!REFERENCED, Ordering::Relaxed);
            },
        }
    }

    fn next_random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// Drop every entry for which `matches(key, value)` holds; returns how many.
    pub(crate) fn retain_not(
        &self,
        mut matches: impl FnMut(&[u64; K], &[u64; V]) -> bool,
    ) -> usize {
        let mut dropped = 0;
        for set in 0..self.headers.len() {
            let locked = self.lock(set);
            for way in 0..self.ways {
                let slot = self.slot(set, way);
                let meta = slot[0].load(Ordering::Relaxed);
                if meta & VALID == 0 {
                    continue;
                }
                let key = std::array::from_fn(|i| slot[1 + i].load(Ordering::Relaxed));
                let value = std::array::from_fn(|i| slot[1 + K + i].load(Ordering::Relaxed));
                if matches(&key, &value) {
                    slot[0].store(next_generation(meta, false), Ordering::Release);
                    dropped += 1;
                }
            }
            self.unlock(set, locked);
        }
        dropped
    }

    /// Drop every entry.
    pub(crate) fn clear(&self) -> usize {
        self.retain_not(|_, _| true)
    }

    /// Number of valid entries (for tests and statistics; not a consistent snapshot).
    pub(crate) fn len(&self) -> usize {
        (0..self.headers.len())
            .flat_map(|set| (0..self.ways).map(move |way| (set, way)))
            .filter(|&(set, way)| self.slot(set, way)[0].load(Ordering::Relaxed) & VALID != 0)
            .count()
    }
}

/// Mix the key words into a set index (a multiply-xorshift, cheap and well spread).
#[inline]
fn hash<const K: usize>(key: &[u64; K]) -> u64 {
    let mut h = 0u64;
    for &w in key {
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_value_is_found_by_its_key() {
        let cache = SeqCache::<1, 2>::new(4, 2, Replacement::Clock);
        assert!(cache.insert(&[7], &[70, 71], || true));
        assert_eq!(cache.lookup(&[7]), Some([70, 71]));
        assert_eq!(cache.lookup(&[8]), None);
    }

    #[test]
    fn insert_with_same_key_replaces_the_value() {
        let cache = SeqCache::<1, 1>::new(1, 4, Replacement::Fifo);
        cache.insert(&[1], &[10], || true);
        cache.insert(&[1], &[11], || true);
        assert_eq!(cache.lookup(&[1]), Some([11]));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn fill_refused_by_epoch_check_inserts_nothing() {
        let cache = SeqCache::<1, 1>::new(1, 4, Replacement::Fifo);
        assert!(!cache.insert(&[1], &[10], || false));
        assert_eq!(cache.lookup(&[1]), None);
    }

    #[test]
    fn full_set_evicts_oldest_under_fifo() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Fifo);
        cache.insert(&[1], &[10], || true);
        cache.insert(&[2], &[20], || true);
        cache.insert(&[3], &[30], || true);
        assert_eq!(cache.lookup(&[1]), None);
        assert_eq!(cache.lookup(&[2]), Some([20]));
        assert_eq!(cache.lookup(&[3]), Some([30]));
    }

    #[test]
    fn clock_keeps_a_recently_hit_entry() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Clock);
        cache.insert(&[1], &[10], || true);
        cache.insert(&[2], &[20], || true);
        assert!(cache.lookup(&[1]).is_some());
        cache.insert(&[3], &[30], || true);
        assert_eq!(cache.lookup(&[1]), Some([10]));
        assert_eq!(cache.lookup(&[2]), None);
    }

    #[test]
    fn retain_not_drops_only_matching_entries() {
        let cache = SeqCache::<1, 1>::new(8, 2, Replacement::Clock);
        for k in 0..8 {
            cache.insert(&[k], &[k % 2], || true);
        }
        assert_eq!(cache.retain_not(|_, v| v[0] == 1), 4);
        assert_eq!(cache.lookup(&[3]), None);
        assert_eq!(cache.lookup(&[4]), Some([0]));
    }

    #[test]
    fn slot_ref_stops_matching_once_the_entry_is_replaced_or_dropped() {
        let cache = SeqCache::<1, 1>::new(1, 1, Replacement::Fifo);
        cache.insert(&[1], &[10], || true);
        let (_, r) = cache.lookup_ref(&[1]).unwrap();
        assert!(cache.still_cached(r));
        cache.insert(&[2], &[20], || true);
        assert!(!cache.still_cached(r));
        let (_, r2) = cache.lookup_ref(&[2]).unwrap();
        cache.clear();
        assert!(!cache.still_cached(r2));
        cache.insert(&[2], &[20], || true);
        assert!(!cache.still_cached(r2), "a refill is a new generation");
    }

    #[test]
    fn concurrent_readers_see_whole_entries_only() {
        // Writers keep replacing one key's value with (n, n); a torn read would show a
        // mismatched pair.
        let cache = SeqCache::<1, 2>::new(1, 1, Replacement::Fifo);
        cache.insert(&[1], &[0, 0], || true);
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 1..20_000u64 {
                    cache.insert(&[1], &[n, n], || true);
                }
            });
            for _ in 0..20_000 {
                if let Some([a, b]) = cache.lookup(&[1]) {
                    assert_eq!(a, b);
                }
            }
        });
    }
}
