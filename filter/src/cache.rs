//! A bounded cache of tokens whose signature has been verified, with their parsed
//! claims. A hit skips the signature check and the parse, nothing else: claims,
//! route rules and later checks still run on every request.
//!
//! Keys are the whole token, compared exactly, so a forged token can never be mistaken
//! for a cached one; the map's fast hash is randomly seeded per process.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// What the cache holds must know when it stops being valid.
pub trait Expiring {
    fn exp(&self) -> i64;
}

impl Expiring for crate::claims::Claims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

#[derive(Debug)]
pub struct VerifiedCache<V> {
    capacity: usize,
    map: HashMap<Rc<str>, Rc<V>, foldhash::fast::RandomState>,
    /// Insertion order, for eviction. May hold keys already dropped from the map.
    order: VecDeque<Rc<str>>,
}

impl<V: Expiring> VerifiedCache<V> {
    pub fn new(capacity: usize) -> Self {
        VerifiedCache {
            capacity,
            map: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// The cached entry of `token`, unless absent or expired by `now`.
    pub fn get(&mut self, token: &str, now: i64) -> Option<Rc<V>> {
        let entry = self.map.get(token)?;
        if entry.exp() <= now {
            self.map.remove(token);
            return None;
        }
        Some(entry.clone())
    }

    pub fn insert(&mut self, token: &str, entry: Rc<V>) {
        if self.capacity == 0 {
            return;
        }
        while self.map.len() >= self.capacity || self.order.len() >= 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let key: Rc<str> = Rc::from(token);
        self.order.push_back(key.clone());
        self.map.insert(key, entry);
    }

    /// Forgets the entries `keep` refuses (the eviction order may still name them).
    pub fn retain(&mut self, keep: impl Fn(&V) -> bool) {
        self.map.retain(|_, v| keep(v));
    }

    /// Forgets everything, e.g. when the key set changes.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;
    use proptest::prelude::*;

    fn claims(exp: i64) -> Rc<Claims> {
        Rc::new(Claims::parse(format!(r#"{{"exp":{exp},"jti":"j"}}"#).as_bytes()).unwrap())
    }

    #[test]
    fn hits_until_expiry() {
        let mut c = VerifiedCache::<Claims>::new(4);
        c.insert("t1", claims(100));
        assert!(c.get("t1", 99).is_some());
        assert!(c.get("t2", 99).is_none());
        assert!(c.get("t1", 100).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = VerifiedCache::<Claims>::new(0);
        c.insert("t1", claims(100));
        assert!(c.get("t1", 1).is_none());
    }

    #[test]
    fn clear_forgets() {
        let mut c = VerifiedCache::<Claims>::new(4);
        c.insert("t1", claims(100));
        c.clear();
        assert!(c.get("t1", 1).is_none());
    }

    proptest! {
        #[test]
        fn stays_within_capacity(cap in 1usize..16, ops in proptest::collection::vec((0u8..40, any::<bool>()), 0..300)) {
            let mut c = VerifiedCache::<Claims>::new(cap);
            for (k, lookup) in ops {
                let key = format!("t{k}");
                if lookup { let _ = c.get(&key, 50); } else { c.insert(&key, claims(i64::from(k) + 40)); }
                prop_assert!(c.map.len() <= cap);
                prop_assert!(c.order.len() <= 2 * cap);
            }
        }

        #[test]
        fn most_recent_insert_is_found(cap in 1usize..16, keys in proptest::collection::vec(0u8..40, 1..100)) {
            let mut c = VerifiedCache::<Claims>::new(cap);
            for k in &keys { c.insert(&format!("t{k}"), claims(1000)); }
            let last = format!("t{}", keys[keys.len() - 1]);
            prop_assert!(c.get(&last, 0).is_some());
        }
    }
}
