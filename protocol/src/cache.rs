//! A bounded, thread-safe cache keyed by content id, oldest entry evicted first.
//!
//! Content ids name immutable bytes, so an entry never goes stale: eviction only
//! bounds memory. Used for module bytes at the coordinator and compiled modules at
//! the worker.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::ids::ContentId;

pub struct ContentCache<V> {
    entries_max: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<ContentId, V>,
    order: VecDeque<ContentId>,
}

impl<V: Clone> ContentCache<V> {
    pub fn new(entries_max: usize) -> Self {
        assert!(entries_max > 0, "a cache holds at least one entry");
        ContentCache {
            entries_max,
            inner: Mutex::new(Inner { entries: HashMap::new(), order: VecDeque::new() }),
        }
    }

    pub fn get(&self, id: &ContentId) -> Option<V> {
        self.inner.lock().expect("content cache lock").entries.get(id).cloned()
    }

    pub fn contains(&self, id: &ContentId) -> bool {
        self.inner.lock().expect("content cache lock").entries.contains_key(id)
    }

    /// Inserts or replaces the entry for `id`, evicting the oldest beyond the bound.
    pub fn insert(&self, id: ContentId, value: V) {
        let mut inner = self.inner.lock().expect("content cache lock");
        if inner.entries.insert(id, value).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > self.entries_max {
            let oldest = inner.order.pop_front().expect("order is longer than the bound");
            inner.entries.remove(&oldest);
        }
        debug_assert_eq!(inner.entries.len(), inner.order.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_entry_is_evicted_past_the_bound_and_replacing_keeps_the_count() {
        let cache = ContentCache::new(2);
        let [a, b, c] = [b"a", b"b", b"c"].map(|bytes| ContentId::of(bytes));
        cache.insert(a, 1);
        cache.insert(b, 2);
        cache.insert(a, 10);
        assert_eq!(cache.get(&a), Some(10));
        cache.insert(c, 3);
        assert!(!cache.contains(&a), "a was inserted first, so it goes first");
        assert_eq!((cache.get(&b), cache.get(&c)), (Some(2), Some(3)));
    }
}
