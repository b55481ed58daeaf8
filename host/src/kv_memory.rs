//! An in-memory key-value store with revisions, for `evhost invoke` without a
//! broker: the same semantics as a JetStream bucket (each write gets a new
//! revision; a conditional write succeeds only at the revision it expects).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Buckets by name, shared by clones.
#[derive(Clone, Default)]
pub struct MemoryBuckets(Arc<Mutex<HashMap<String, Bucket>>>);

#[derive(Default)]
struct Bucket {
    /// The last revision handed out in this bucket.
    revision: u64,
    entries: BTreeMap<String, (u64, Vec<u8>)>,
}

/// A conditional write found the key at another revision.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict;

impl MemoryBuckets {
    /// The value of `key` and its revision.
    pub fn entry(&self, bucket: &str, key: &str) -> Option<(u64, Vec<u8>)> {
        let buckets = self.0.lock().unwrap();
        buckets.get(bucket)?.entries.get(key).cloned()
    }

    /// Writes `value`; returns its revision.
    pub fn put(&self, bucket: &str, key: &str, value: Vec<u8>) -> u64 {
        let mut buckets = self.0.lock().unwrap();
        let b = buckets.entry(bucket.to_string()).or_default();
        b.revision += 1;
        b.entries.insert(key.to_string(), (b.revision, value));
        b.revision
    }

    /// Writes `value` only if the key is at `expected` (`None`: has no value).
    pub fn put_if(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<u64, Conflict> {
        let mut buckets = self.0.lock().unwrap();
        let b = buckets.entry(bucket.to_string()).or_default();
        if b.entries.get(key).map(|(rev, _)| *rev) != expected {
            return Err(Conflict);
        }
        b.revision += 1;
        b.entries.insert(key.to_string(), (b.revision, value));
        Ok(b.revision)
    }

    /// Removes `key`.
    pub fn delete(&self, bucket: &str, key: &str) {
        if let Some(b) = self.0.lock().unwrap().get_mut(bucket) {
            b.entries.remove(key);
        }
    }

    /// Every key of `bucket`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let buckets = self.0.lock().unwrap();
        buckets
            .get(bucket)
            .map(|b| b.entries.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_write_wins_only_at_the_revision_it_read() {
        let kv = MemoryBuckets::default();
        assert_eq!(kv.put_if("b", "k", None, b"1".to_vec()), Ok(1));
        assert_eq!(kv.put_if("b", "k", None, b"x".to_vec()), Err(Conflict));
        let (rev, value) = kv.entry("b", "k").unwrap();
        assert_eq!(value, b"1");
        // Two writers read revision 1; the first wins, the second conflicts.
        assert_eq!(kv.put_if("b", "k", Some(rev), b"2".to_vec()), Ok(2));
        assert_eq!(kv.put_if("b", "k", Some(rev), b"3".to_vec()), Err(Conflict));
        assert_eq!(kv.entry("b", "k").unwrap().1, b"2");
    }

    #[test]
    fn buckets_are_separate_and_keys_sorted() {
        let kv = MemoryBuckets::default();
        kv.put("a", "z", vec![]);
        kv.put("a", "m", vec![]);
        kv.put("b", "x", vec![]);
        assert_eq!(kv.keys("a"), ["m", "z"]);
        kv.delete("a", "m");
        assert_eq!(kv.keys("a"), ["z"]);
        assert!(kv.entry("b", "z").is_none());
    }
}
