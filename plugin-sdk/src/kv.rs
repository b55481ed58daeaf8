//! Key-value state for handlers: typed JSON values in a bucket the plugin's
//! manifest grants (`[capabilities] keyvalue = ["stock"]`), shared by every
//! host and kept across restarts (evhost backs buckets with NATS JetStream).
//!
//! ```no_run
//! use evhost_sdk::kv::Bucket;
//! # fn f() -> Result<(), evhost_sdk::HandlerError> {
//! let stock = Bucket::open("stock")?;
//! let left: i64 = stock.increment("apples", -1)?;
//! // Read, change, write back; retried when another host wrote in between.
//! stock.update("pears", |count: Option<u32>| Ok(Some(count.unwrap_or(0) + 1)))?;
//! // Several keys in one call (at most 1000; not atomic).
//! let counts: Vec<Option<u32>> = stock.get_many(&["apples", "pears"])?;
//! # Ok(()) }
//! ```
//!
//! A write happens when it is made: it is not undone when the handler later
//! fails and the message is retried. Key it by the message's idempotency key,
//! or make it a compare-and-swap that checks it was not already done.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HandlerError;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// How many times [`Bucket::update`] retries after losing a race.
const UPDATE_TRIES: usize = 1000;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The bucket is not granted to this plugin (or does not exist).
    NoSuchBucket(String),
    /// The store refused the operation.
    AccessDenied,
    /// The key is not one a bucket can hold.
    InvalidKey(String),
    /// The stored value does not decode as the type asked for, or the value
    /// given does not encode.
    Json(String),
    /// The value is over the plugin's size limit.
    TooLarge(String),
    /// An update kept losing races to other writers.
    Contended(String),
    /// Anything else (the store is unreachable, …).
    Store(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NoSuchBucket(b) => write!(
                f,
                "key-value bucket {b:?} is not granted to this plugin ([capabilities] keyvalue)"
            ),
            KvError::AccessDenied => write!(f, "key-value access denied"),
            KvError::InvalidKey(m) | KvError::Json(m) | KvError::TooLarge(m) => {
                write!(f, "key-value: {m}")
            }
            KvError::Contended(m) => write!(f, "key-value: {m}"),
            KvError::Store(m) => write!(f, "key-value store: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

/// What cannot work on a retry is permanent; a store that is down, or a key
/// fought over, may work later: transient.
impl From<KvError> for HandlerError {
    fn from(err: KvError) -> Self {
        match err {
            KvError::NoSuchBucket(_)
            | KvError::AccessDenied
            | KvError::InvalidKey(_)
            | KvError::Json(_)
            | KvError::TooLarge(_) => HandlerError::permanent(err),
            KvError::Contended(_) | KvError::Store(_) => HandlerError::transient(err),
        }
    }
}

fn store_error(bucket: &str, e: store::Error) -> KvError {
    match e {
        store::Error::NoSuchStore => KvError::NoSuchBucket(bucket.to_string()),
        store::Error::AccessDenied => KvError::AccessDenied,
        store::Error::Other(m) if m.starts_with("invalid key") => KvError::InvalidKey(m),
        store::Error::Other(m) if m.contains("over the limit") => KvError::TooLarge(m),
        store::Error::Other(m) => KvError::Store(m),
    }
}

/// An open bucket.
pub struct Bucket {
    name: String,
    inner: store::Bucket,
}

impl Bucket {
    /// Opens `name`, which the plugin's manifest must grant.
    pub fn open(name: &str) -> Result<Bucket, KvError> {
        let inner = store::open(name).map_err(|e| store_error(name, e))?;
        Ok(Bucket {
            name: name.to_string(),
            inner,
        })
    }

    fn err(&self, e: store::Error) -> KvError {
        store_error(&self.name, e)
    }

    /// The bytes stored at `key`.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key).map_err(|e| self.err(e))
    }

    /// The JSON value stored at `key`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        self.get_raw(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Stores bytes at `key`.
    pub fn set_raw(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.set(key, value).map_err(|e| self.err(e))
    }

    /// Stores `value` as JSON at `key`.
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), KvError> {
        self.set_raw(key, &encode(value)?)
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.inner.delete(key).map_err(|e| self.err(e))
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.inner.exists(key).map_err(|e| self.err(e))
    }

    /// Every key of the bucket.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .list_keys(cursor.as_deref())
                .map_err(|e| self.err(e))?;
            all.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The JSON values at `keys`, decoded as `T`, in the order asked (`None`:
    /// no value), read in one call. At most 1000 keys.
    pub fn get_many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>, KvError> {
        let asked: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let values = batch::get_many(&self.inner, &asked).map_err(|e| self.err(e))?;
        if values.len() != keys.len() {
            return Err(KvError::Store(format!(
                "get-many of {} keys answered {} values",
                keys.len(),
                values.len()
            )));
        }
        keys.iter()
            .zip(values)
            .map(|(key, value)| value.map(|(_, bytes)| decode(key, &bytes)).transpose())
            .collect()
    }

    /// Stores each value as JSON at its key, in one call. At most 1000 pairs;
    /// every key and value is checked first (an invalid one writes nothing),
    /// but a store failing part way may leave some written and others not.
    pub fn set_many<T: Serialize>(&self, pairs: &[(&str, T)]) -> Result<(), KvError> {
        let encoded = pairs
            .iter()
            .map(|(key, value)| Ok((key.to_string(), encode(value)?)))
            .collect::<Result<Vec<_>, KvError>>()?;
        batch::set_many(&self.inner, &encoded).map_err(|e| self.err(e))
    }

    /// Removes every key in `keys` (those with no value are skipped), in one
    /// call. At most 1000 keys.
    pub fn delete_many(&self, keys: &[&str]) -> Result<(), KvError> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        batch::delete_many(&self.inner, &keys).map_err(|e| self.err(e))
    }

    /// Adds `delta` to the number at `key` (0 when absent), atomically, and
    /// returns the new number.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.inner, key, delta).map_err(|e| self.err(e))
    }

    /// Reads `key` for a compare-and-swap.
    pub fn cas<T: DeserializeOwned>(&self, key: &str) -> Result<Cas<T>, KvError> {
        let handle = atomics::Cas::new(&self.inner, key).map_err(|e| self.err(e))?;
        Cas::from_handle(&self.name, key, handle)
    }

    /// Reads `key`, passes its value to `change`, and writes what `change`
    /// returns (`None`: leave the key as it is) only if nobody wrote the key
    /// in between; otherwise reads again and calls `change` again. Returns
    /// the value written (or left). `change` may refuse with a
    /// [`HandlerError`], which ends the update with nothing written.
    pub fn update<T, F>(&self, key: &str, mut change: F) -> Result<Option<T>, HandlerError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>, HandlerError>,
    {
        let mut cas = self.cas::<T>(key)?;
        for _ in 0..UPDATE_TRIES {
            let current = cas.current.take();
            let Some(next) = change(current)? else {
                return Ok(None);
            };
            match cas.swap(&next)? {
                Swapped::Done => return Ok(Some(next)),
                Swapped::Lost(fresh) => cas = fresh,
            }
        }
        Err(KvError::Contended(format!(
            "update of {key:?} lost {UPDATE_TRIES} races to other writers"
        ))
        .into())
    }
}

/// A key as read for a compare-and-swap.
pub struct Cas<T> {
    bucket: String,
    key: String,
    handle: atomics::Cas,
    /// The value read (`None`: the key had none).
    pub current: Option<T>,
}

/// What a [`Cas::swap`] did.
pub enum Swapped<T> {
    /// The value was written.
    Done,
    /// Someone wrote the key first; nothing was written. The key as it is now.
    Lost(Cas<T>),
}

impl<T: DeserializeOwned> Cas<T> {
    fn from_handle(bucket: &str, key: &str, handle: atomics::Cas) -> Result<Self, KvError> {
        let current = handle
            .current()
            .map_err(|e| store_error(bucket, e))?
            .map(|bytes| decode(key, &bytes))
            .transpose()?;
        Ok(Cas {
            bucket: bucket.to_string(),
            key: key.to_string(),
            handle,
            current,
        })
    }

    /// Writes `value` if the key is still as it was read.
    pub fn swap(self, value: &T) -> Result<Swapped<T>, KvError>
    where
        T: Serialize,
    {
        let bytes = encode(value)?;
        match atomics::swap(self.handle, &bytes) {
            Ok(()) => Ok(Swapped::Done),
            Err(atomics::CasError::CasFailed(fresh)) => Ok(Swapped::Lost(Cas::from_handle(
                &self.bucket,
                &self.key,
                fresh,
            )?)),
            Err(atomics::CasError::StoreError(e)) => Err(store_error(&self.bucket, e)),
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|e| {
        KvError::Json(format!(
            "the value of {key:?} does not decode as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(value).map_err(|e| KvError::Json(format!("cannot encode the value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_a_retry_cannot_fix_are_permanent() {
        let permanent = [
            store_error("b", store::Error::NoSuchStore),
            store_error("b", store::Error::Other("invalid key \"a b\"".into())),
            store_error(
                "b",
                store::Error::Other("value of 9 bytes is over the limit of 1".into()),
            ),
            store_error(
                "b",
                store::Error::Other("a batch of 1001 keys is over the limit of 1000".into()),
            ),
            KvError::Json("x".into()),
        ];
        for e in permanent {
            assert!(
                matches!(HandlerError::from(e.clone()), HandlerError::Permanent(_)),
                "{e}"
            );
        }
        let transient = [
            store_error(
                "b",
                store::Error::Other("key-value store: timed out".into()),
            ),
            KvError::Contended("x".into()),
        ];
        for e in transient {
            assert!(
                matches!(HandlerError::from(e.clone()), HandlerError::Transient(_)),
                "{e}"
            );
        }
        assert!(
            store_error("stock", store::Error::NoSuchStore)
                .to_string()
                .contains("\"stock\" is not granted")
        );
    }
}
