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
//!
//! Each entry keeps that epoch as its stamp, which makes a full clear O(1): the cache
//! records the epoch of the clear and from then on ignores every entry stamped before it
//! (see [`SeqCache::clear`]). A global invalidation touches no slot, so it neither costs
//! a pass over thousands of entries nor evicts the host cache lines the next walks need.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::Replacement;

/// Metadata bit: the slot holds an entry.
const VALID: u64 = 1;
/// Metadata bit: the entry was hit since the clock hand last passed it.
const REFERENCED: u64 = 2;
/// Metadata bits 63:2 count the writes of the slot (fills and drops), so a reader that
/// remembers a slot's metadata knows later whether it still holds the same entry.
const GENERATION: u64 = 4;

/// What a fill carries: the stamp its entry gets and the check it must pass under the set
/// lock.
pub(crate) trait Fill {
    /// The invalidation epoch the entry's data was read in (see [`SeqCache::clear`]).
    fn stamp(&self) -> u64;
    /// False when the entry's data may predate an invalidation: the fill is dropped.
    fn still_valid(&self) -> bool;
}

/// A fill no invalidation can race with: entries of a cache that is never cleared, and
/// tests.
pub(crate) struct Unguarded;

impl Fill for Unguarded {
    fn stamp(&self) -> u64 {
        0
    }

    fn still_valid(&self) -> bool {
        true
    }
}

/// Where an entry sits and which generation it was: enough to check later, without a
/// lookup, that the entry is still cached unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    /// Slot number (set × ways + way).
    pub(crate) index: u64,
    /// The slot's metadata without the replacement bit.
    pub(crate) meta: u64,
}

/// A slot found still holding the entry a [`SlotRef`] named (see [`SeqCache::current`]).
pub(crate) struct CurrentSlot<'a> {
    meta: &'a AtomicU64,
    /// The metadata as the check read it.
    seen: u64,
    clock: bool,
}

impl CurrentSlot<'_> {
    /// Count a hit on the entry for the replacement policy, as a lookup would.
    #[inline]
    pub(crate) fn touch(self) {
        if self.clock && self.seen & REFERENCED == 0 {
            self.meta.fetch_or(REFERENCED, Ordering::Relaxed);
        }
    }
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

/// One entry's storage: the metadata word, the stamp, then the key and value words.
struct Slot<const K: usize, const V: usize> {
    meta: AtomicU64,
    /// The fill's [`Fill::stamp`]; the entry is gone once a clear at a later epoch ran.
    stamp: AtomicU64,
    key: [AtomicU64; K],
    value: [AtomicU64; V],
}

impl<const K: usize, const V: usize> Slot<K, V> {
    fn new() -> Self {
        Self {
            meta: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
            key: std::array::from_fn(|_| AtomicU64::new(0)),
            value: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// True when the slot's key words equal `key` (the caller checks validity).
    #[inline(always)]
    fn holds(&self, key: &[u64; K]) -> bool {
        // The first key word differs for almost every other entry: test it first.
        if self.key[0].load(Ordering::Relaxed) != key[0] {
            return false;
        }
        let rest = self.key[1..].iter().zip(&key[1..]);
        rest.fold(true, |same, (cell, k)| {
            same & (cell.load(Ordering::Relaxed) == *k)
        })
    }

    /// True when the slot holds an entry no clear has dropped since it was filled. A
    /// cache never cleared (`cleared` 0) needs no look at the stamp.
    #[inline(always)]
    fn live(&self, meta: u64, cleared: u64) -> bool {
        meta & VALID != 0 && (cleared == 0 || self.stamp.load(Ordering::Relaxed) >= cleared)
    }

    #[inline(always)]
    fn load_value(&self) -> [u64; V] {
        std::array::from_fn(|i| self.value[i].load(Ordering::Relaxed))
    }
}

/// How a cache spreads its keys over its sets.
pub(crate) trait SetHash<const K: usize> {
    /// The hash whose low bits pick the set.
    fn hash(key: &[u64; K]) -> u64;
}

/// Each key word mixed in turn (a multiply-xorshift per word, cheap and well spread). The
/// architectural caches use it, and must keep it: where an entry lands decides what it
/// evicts.
pub(crate) struct Mix;

impl<const K: usize> SetHash<K> for Mix {
    #[inline(always)]
    fn hash(key: &[u64; K]) -> u64 {
        let mut h = 0u64;
        for &w in key {
            h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
        }
        h
    }
}

/// The later words multiplied independently and folded into the first, then one
/// multiply-xorshift: half the dependent multiplies of [`Mix`] on the way to the set. For
/// the front cache, which is probed on every translation and whose placement nothing
/// observes.
pub(crate) struct Fold;

impl<const K: usize> SetHash<K> for Fold {
    #[inline(always)]
    fn hash(key: &[u64; K]) -> u64 {
        let mut h = key[0];
        for &w in &key[1..] {
            h ^= w.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        let h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ h >> 29
    }
}

/// A set-associative cache of `K`-word keys and `V`-word values, placed by `H`.
pub(crate) struct SeqCache<const K: usize, const V: usize, H = Mix> {
    headers: Box<[SetHeader]>,
    /// `ways` consecutive slots per set.
    slots: Box<[Slot<K, V>]>,
    set_mask: u64,
    ways: usize,
    policy: Replacement,
    /// xorshift state for the random policy.
    rng: AtomicU64,
    /// Bit n set: an entry of kind n (a page size, a level: the caller's choice) was
    /// inserted since the last full clear. Lookups skip kinds not inserted, so a walk
    /// after a global flush does not probe the empty cache level by level. Only a full
    /// clear resets it; a fill racing with that clear can at worst stay unseen until the
    /// next fill of its kind, which is a miss (a fresh walk), never a stale hit.
    kinds: AtomicU64,
    /// Entries stamped below this are gone: the epoch of the last full clear.
    cleared: AtomicU64,
    hash: PhantomData<H>,
}

impl<const K: usize, const V: usize, H: SetHash<K>> SeqCache<K, V, H> {
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
            slots: (0..sets * ways).map(|_| Slot::new()).collect(),
            set_mask: sets as u64 - 1,
            ways,
            policy,
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            kinds: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            hash: PhantomData,
        }
    }

    /// The slots of `set`, way 0 first.
    #[inline(always)]
    fn set_slots(&self, set: usize) -> &[Slot<K, V>] {
        let first = set * self.ways;
        &self.slots[first..first + self.ways]
    }

    #[inline(always)]
    fn set_of(&self, key: &[u64; K]) -> usize {
        (H::hash(key) & self.set_mask) as usize
    }

    /// True when an entry of `kind` (0..64) may be cached.
    #[inline]
    pub(crate) fn may_hold(&self, kind: u32) -> bool {
        self.kinds.load(Ordering::Relaxed) & (1 << kind) != 0
    }

    /// [`SeqCache::insert`] of an entry of `kind`, which lookups check with
    /// [`SeqCache::may_hold`].
    #[inline]
    pub(crate) fn insert_kind(
        &self,
        key: &[u64; K],
        value: &[u64; V],
        kind: u32,
        fill: impl Fill,
    ) -> Option<SlotRef> {
        if !self.may_hold(kind) {
            self.kinds.fetch_or(1 << kind, Ordering::Relaxed);
        }
        self.insert(key, value, fill)
    }

    /// The value cached under `key`, if any.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u64; K]) -> Option<[u64; V]> {
        self.lookup_ref(key).map(|(value, _)| value)
    }

    /// The value cached under `key` and where it sits, if any.
    #[inline(always)]
    pub(crate) fn lookup_ref(&self, key: &[u64; K]) -> Option<([u64; V], SlotRef)> {
        let set = self.set_of(key);
        let header = &self.headers[set];
        let slots = self.set_slots(set);
        let cleared = self.cleared.load(Ordering::Acquire);
        loop {
            let before = header.seq.load(Ordering::Acquire);
            if before & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let found = Self::scan(slots, key, cleared);
            fence(Ordering::Acquire);
            if header.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            let (way, slot, meta, value) = found?;
            self.touch_meta(&slot.meta, meta);
            let slot_ref = SlotRef {
                index: (set * self.ways + way) as u64,
                meta: meta & !REFERENCED,
            };
            return Some((value, slot_ref));
        }
    }

    /// The slot `r` names, if it still holds the entry it named. A full clear touches no
    /// slot, so this does not see one: a caller that keeps references across lookups
    /// must also check that no full clear ran since (see `Caches::full_clears`).
    #[inline]
    pub(crate) fn current(&self, r: SlotRef) -> Option<CurrentSlot<'_>> {
        let slot = self.slots.get(r.index as usize)?;
        let seen = slot.meta.load(Ordering::Acquire);
        (seen & !REFERENCED == r.meta).then_some(CurrentSlot {
            meta: &slot.meta,
            seen,
            clock: self.policy == Replacement::Clock,
        })
    }

    /// Find `key` among `slots`, ignoring entries stamped before `cleared`: its way, slot,
    /// metadata and a copy of its value.
    #[inline(always)]
    fn scan<'s>(
        slots: &'s [Slot<K, V>],
        key: &[u64; K],
        cleared: u64,
    ) -> Option<(usize, &'s Slot<K, V>, u64, [u64; V])> {
        for (way, slot) in slots.iter().enumerate() {
            if !slot.holds(key) {
                continue;
            }
            let meta = slot.meta.load(Ordering::Relaxed);
            if !slot.live(meta, cleared) {
                continue;
            }
            return Some((way, slot, meta, slot.load_value()));
        }
        None
    }

    /// Mark a hit for the clock policy: a write only when the bit is not yet set, so a hot
    /// entry costs its readers nothing.
    #[inline(always)]
    fn touch_meta(&self, meta: &AtomicU64, seen: u64) {
        if seen & REFERENCED == 0 && self.policy == Replacement::Clock {
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
    /// victim chosen by the policy. [`Fill::still_valid`] runs under the set lock; the
    /// fill is dropped (returns `None`) when it says the walk raced with an invalidation.
    /// On success, returns where the entry now sits.
    pub(crate) fn insert(
        &self,
        key: &[u64; K],
        value: &[u64; V],
        fill: impl Fill,
    ) -> Option<SlotRef> {
        let set = self.set_of(key);
        let locked = self.lock(set);
        if !fill.still_valid() {
            self.unlock(set, locked);
            return None;
        }
        let slots = self.set_slots(set);
        let way = self.choose_way(set, slots, key);
        let slot = &slots[way];
        slot.stamp.store(fill.stamp(), Ordering::Relaxed);
        for (cell, k) in slot.key.iter().zip(key) {
            cell.store(*k, Ordering::Relaxed);
        }
        for (cell, v) in slot.value.iter().zip(value) {
            cell.store(*v, Ordering::Relaxed);
        }
        let meta = next_generation(slot.meta.load(Ordering::Relaxed), true);
        slot.meta.store(meta, Ordering::Release);
        self.unlock(set, locked);
        Some(SlotRef {
            index: (set * self.ways + way) as u64,
            meta,
        })
    }

    /// The way to fill: the entry with the same key, else a free way (one a clear
    /// dropped counts as free), else the victim.
    #[inline(always)]
    fn choose_way(&self, set: usize, slots: &[Slot<K, V>], key: &[u64; K]) -> usize {
        let cleared = self.cleared.load(Ordering::Relaxed);
        let mut free = None;
        for (way, slot) in slots.iter().enumerate() {
            let meta = slot.meta.load(Ordering::Relaxed);
            if !slot.live(meta, cleared) {
                free.get_or_insert(way);
            } else if slot.holds(key) {
                return way;
            }
        }
        if let Some(way) = free {
            return way;
        }
        let hand = &self.headers[set].hand;
        match self.policy {
            Replacement::Fifo => self.advance_hand(hand),
            Replacement::Random => (self.next_random() % self.ways as u64) as usize,
            Replacement::Clock => loop {
                let way = self.advance_hand(hand);
                let meta = &slots[way].meta;
                if meta.load(Ordering::Relaxed) & REFERENCED == 0 {
                    break way;
                }
                meta.fetch_and(!REFERENCED, Ordering::Relaxed);
            },
        }
    }

    /// The way the hand points at, moving the hand on to the next. The hand is always
    /// below `ways`, so a compare replaces the division a modulo would cost.
    #[inline(always)]
    fn advance_hand(&self, hand: &AtomicU32) -> usize {
        let way = hand.load(Ordering::Relaxed) as usize;
        let way = if way < self.ways { way } else { 0 };
        let next = if way + 1 == self.ways { 0 } else { way + 1 };
        hand.store(next as u32, Ordering::Relaxed);
        way
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
        let cleared = self.cleared.load(Ordering::Acquire);
        for set in 0..self.headers.len() {
            let locked = self.lock(set);
            for slot in self.set_slots(set) {
                let meta = slot.meta.load(Ordering::Relaxed);
                if !slot.live(meta, cleared) {
                    continue;
                }
                let key = std::array::from_fn(|i| slot.key[i].load(Ordering::Relaxed));
                if matches(&key, &slot.load_value()) {
                    slot.meta
                        .store(next_generation(meta, false), Ordering::Release);
                    dropped += 1;
                }
            }
            self.unlock(set, locked);
        }
        dropped
    }

    /// Drop every entry stamped before `epoch`, and forget which kinds were ever inserted
    /// (see `kinds`). O(1): no slot is touched; lookups, fills and drops from now on treat
    /// those entries as absent.
    ///
    /// `epoch` is the invalidation epoch the clear published before calling this. A fill
    /// stamped below it comes from a walk that started before the clear: if its epoch
    /// check did not observe the clear's epoch, the entry still gets in, and is dropped
    /// here. A fill from a walk that started after the clear is stamped above `epoch`
    /// and survives.
    pub(crate) fn clear(&self, epoch: u64) {
        self.kinds.store(0, Ordering::Relaxed);
        self.cleared.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Number of entries held (for tests and statistics; not a consistent snapshot).
    pub(crate) fn len(&self) -> usize {
        let cleared = self.cleared.load(Ordering::Acquire);
        self.slots
            .iter()
            .filter(|slot| slot.live(slot.meta.load(Ordering::Relaxed), cleared))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fill whose check passes, with the stamp given. Walks fill only in even epochs
    /// and a clear's epoch is odd, as in the unit.
    struct At(u64);

    impl Fill for At {
        fn stamp(&self) -> u64 {
            self.0
        }

        fn still_valid(&self) -> bool {
            true
        }
    }

    /// A fill that raced with an invalidation.
    struct Refused;

    impl Fill for Refused {
        fn stamp(&self) -> u64 {
            0
        }

        fn still_valid(&self) -> bool {
            false
        }
    }

    #[test]
    fn inserted_value_is_found_by_its_key() {
        let cache = SeqCache::<1, 2>::new(4, 2, Replacement::Clock);
        assert!(cache.insert(&[7], &[70, 71], Unguarded).is_some());
        assert_eq!(cache.lookup(&[7]), Some([70, 71]));
        assert_eq!(cache.lookup(&[8]), None);
    }

    #[test]
    fn insert_with_same_key_replaces_the_value() {
        let cache = SeqCache::<1, 1>::new(1, 4, Replacement::Fifo);
        cache.insert(&[1], &[10], Unguarded);
        cache.insert(&[1], &[11], Unguarded);
        assert_eq!(cache.lookup(&[1]), Some([11]));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn fill_refused_by_epoch_check_inserts_nothing() {
        let cache = SeqCache::<1, 1>::new(1, 4, Replacement::Fifo);
        assert!(cache.insert(&[1], &[10], Refused).is_none());
        assert_eq!(cache.lookup(&[1]), None);
    }

    #[test]
    fn full_set_evicts_oldest_under_fifo() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Fifo);
        cache.insert(&[1], &[10], Unguarded);
        cache.insert(&[2], &[20], Unguarded);
        cache.insert(&[3], &[30], Unguarded);
        assert_eq!(cache.lookup(&[1]), None);
        assert_eq!(cache.lookup(&[2]), Some([20]));
        assert_eq!(cache.lookup(&[3]), Some([30]));
    }

    #[test]
    fn clock_keeps_a_recently_hit_entry() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Clock);
        cache.insert(&[1], &[10], Unguarded);
        cache.insert(&[2], &[20], Unguarded);
        assert!(cache.lookup(&[1]).is_some());
        cache.insert(&[3], &[30], Unguarded);
        assert_eq!(cache.lookup(&[1]), Some([10]));
        assert_eq!(cache.lookup(&[2]), None);
    }

    #[test]
    fn a_cleared_cache_holds_no_kind_until_the_next_fill() {
        let cache = SeqCache::<1, 1>::new(4, 2, Replacement::Clock);
        cache.insert_kind(&[1], &[10], 3, Unguarded);
        assert!(cache.may_hold(3));
        cache.clear(1);
        assert!(!cache.may_hold(3), "an empty cache needs no probe");
        cache.insert_kind(&[2], &[20], 3, At(2));
        assert!(cache.may_hold(3));
        assert_eq!(cache.lookup(&[2]), Some([20]));
    }

    #[test]
    fn clear_drops_entries_stamped_before_its_epoch_only() {
        let cache = SeqCache::<1, 1>::new(4, 2, Replacement::Clock);
        cache.insert(&[1], &[10], At(4));
        cache.insert(&[2], &[20], At(6));
        cache.clear(5);
        assert_eq!(cache.lookup(&[1]), None);
        assert_eq!(
            cache.lookup(&[2]),
            Some([20]),
            "filled by a walk after the clear"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_older_clear_never_revives_entries() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Clock);
        cache.insert(&[1], &[10], At(2));
        cache.clear(7);
        cache.clear(3);
        assert_eq!(cache.lookup(&[1]), None);
    }

    #[test]
    fn cleared_slots_are_free_for_new_fills() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Fifo);
        cache.insert(&[1], &[10], At(0));
        cache.insert(&[2], &[20], At(0));
        cache.clear(1);
        cache.insert(&[3], &[30], At(2));
        cache.insert(&[4], &[40], At(2));
        assert_eq!(cache.lookup(&[3]), Some([30]), "no live entry was evicted");
        assert_eq!(cache.lookup(&[4]), Some([40]));
    }

    #[test]
    fn a_refill_after_a_clear_is_found_beside_its_cleared_copy() {
        let cache = SeqCache::<1, 1>::new(1, 2, Replacement::Fifo);
        cache.insert(&[5], &[50], At(0));
        cache.clear(1);
        cache.insert(&[5], &[51], At(2));
        assert_eq!(cache.lookup(&[5]), Some([51]));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn drops_after_a_clear_count_only_live_entries() {
        let cache = SeqCache::<1, 1>::new(2, 2, Replacement::Clock);
        cache.insert(&[1], &[10], At(0));
        cache.clear(1);
        cache.insert(&[2], &[20], At(2));
        assert_eq!(cache.retain_not(|_, _| true), 1);
    }

    #[test]
    fn dropping_some_entries_keeps_the_kinds() {
        let cache = SeqCache::<1, 1>::new(4, 2, Replacement::Clock);
        cache.insert_kind(&[1], &[10], 2, Unguarded);
        cache.retain_not(|k, _| k[0] == 1);
        assert!(cache.may_hold(2), "only a full clear resets the kinds");
    }

    #[test]
    fn retain_not_drops_only_matching_entries() {
        let cache = SeqCache::<1, 1>::new(8, 2, Replacement::Clock);
        for k in 0..8 {
            cache.insert(&[k], &[k % 2], Unguarded);
        }
        assert_eq!(cache.retain_not(|_, v| v[0] == 1), 4);
        assert_eq!(cache.lookup(&[3]), None);
        assert_eq!(cache.lookup(&[4]), Some([0]));
    }

    #[test]
    fn slot_ref_stops_matching_once_the_entry_is_replaced_or_dropped() {
        let cache = SeqCache::<1, 1>::new(1, 1, Replacement::Fifo);
        cache.insert(&[1], &[10], Unguarded);
        let (_, r) = cache.lookup_ref(&[1]).unwrap();
        assert!(cache.current(r).is_some());
        cache.insert(&[2], &[20], Unguarded);
        assert!(cache.current(r).is_none());
        let (_, r2) = cache.lookup_ref(&[2]).unwrap();
        cache.retain_not(|_, _| true);
        assert!(cache.current(r2).is_none());
        let r3 = cache.insert(&[2], &[20], At(0)).unwrap();
        assert!(cache.current(r2).is_none(), "a refill is a new generation");
        assert_eq!(
            cache.lookup_ref(&[2]).unwrap().1,
            r3,
            "insert names the slot it filled"
        );
    }

    #[test]
    fn concurrent_readers_see_whole_entries_only() {
        // Writers keep replacing one key's value with (n, n); a torn read would show a
        // mismatched pair.
        let cache = SeqCache::<1, 2>::new(1, 1, Replacement::Fifo);
        cache.insert(&[1], &[0, 0], Unguarded);
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 1..20_000u64 {
                    cache.insert(&[1], &[n, n], Unguarded);
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
