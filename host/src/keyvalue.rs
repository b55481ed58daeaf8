//! `wasi:keyvalue` (store, atomics and batch, 0.2.0-draft2) for plugins, backed by
//! NATS JetStream key-value buckets, so state is shared by every host and
//! survives restarts; or, for `evhost invoke` without a broker, by memory.
//!
//! A plugin opens only the buckets its manifest names in
//! `[capabilities] keyvalue` (others are `no-such-store`). The bucket `stock`
//! is the NATS bucket `stock` (stream `KV_stock`); evhost creates it when it
//! is missing (with the host's `--replicas`), and two plugins that name the same bucket share it. A
//! compare-and-swap remembers the revision it read and writes only at that
//! revision, so of two hosts racing on one key exactly one wins. A batch
//! checks every key (and value) before it touches any, holds at most
//! [`MAX_BATCH`] keys, and reads or writes up to [`BATCH_IN_FLIGHT`] of them
//! at once; what `get-many` returns must fit in the plugin's memory.
//!
//! A call made on a shard goes over that shard's own connection (whose task
//! runs on the shard's thread), so a get or a swap is one round trip to
//! nats-server with no wake-up of another thread on the way.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use wasmtime::component::Resource;

use crate::kv_memory::MemoryBuckets;
use crate::replicas::Replicas;
use crate::runtime::State;
use crate::runtime::wasi::keyvalue::atomics::{self, CasError};
use crate::runtime::wasi::keyvalue::batch;
use crate::runtime::wasi::keyvalue::store::{self, Error, KeyResponse};

/// Keys per `list-keys` page.
const PAGE: usize = 1000;
/// Tries of an increment that keeps losing races before it gives up.
const INCREMENT_TRIES: usize = 100;
/// Keys one batch call may hold.
pub const MAX_BATCH: usize = 1000;
/// Reads or writes of one batch in flight at once (each one request to
/// nats-server over the same connection).
const BATCH_IN_FLIGHT: usize = 32;

/// Where the buckets live. Cheap to clone; one per host.
#[derive(Clone)]
pub enum Backend {
    /// JetStream key-value buckets, opened once per host and kept.
    Nats(Arc<NatsBuckets>),
    /// In memory, for `evhost invoke` with no broker.
    Memory(MemoryBuckets),
}

/// The JetStream buckets, on the host's connection and on each shard's.
pub struct NatsBuckets {
    /// The replica count of a bucket created here.
    replicas: Replicas,
    /// Over the host's own connection: for calls off the shards.
    host: Connection,
    /// Over each shard's connection, by shard index.
    shards: Vec<Connection>,
}

/// One connection's JetStream context and the buckets opened on it so far.
struct Connection {
    js: jetstream::Context,
    open: tokio::sync::Mutex<HashMap<String, Arc<kv::Store>>>,
}

impl Connection {
    fn new(client: async_nats::Client) -> Self {
        Connection {
            js: jetstream::new(client),
            open: Default::default(),
        }
    }

    /// Bucket `name`, opened (or created, with `replicas` copies) on the
    /// first call.
    async fn open(&self, name: &str, replicas: Replicas) -> Result<Arc<kv::Store>, Error> {
        let mut open = self.open.lock().await;
        if let Some(store) = open.get(name) {
            return Ok(store.clone());
        }
        let store = crate::kv_bucket::open_or_create(&self.js, name, None, replicas)
            .await
            .map_err(|e| Error::Other(crate::errors::one_line(&format!("{e:#}"))))?;
        let store = Arc::new(store);
        open.insert(name.to_string(), store.clone());
        Ok(store)
    }
}

impl Backend {
    /// Buckets on the NATS server behind `client`, used through
    /// `shard_clients[i]` by calls made on shard `i`; one created here gets
    /// `replicas` copies.
    pub fn nats(
        client: async_nats::Client,
        shard_clients: Vec<async_nats::Client>,
        replicas: Replicas,
    ) -> Self {
        Backend::Nats(Arc::new(NatsBuckets {
            replicas,
            host: Connection::new(client),
            shards: shard_clients.into_iter().map(Connection::new).collect(),
        }))
    }

    async fn open(&self, name: &str) -> Result<Handle, Error> {
        match self {
            Backend::Memory(m) => Ok(Handle::Memory(m.clone(), name.to_string())),
            Backend::Nats(nats) => {
                let connection = crate::shard::current()
                    .and_then(|i| nats.shards.get(i))
                    .unwrap_or(&nats.host);
                Ok(Handle::Nats(connection.open(name, nats.replicas).await?))
            }
        }
    }
}

/// What one plugin may open, and how large a value may be.
#[derive(Clone)]
pub struct KvAccess {
    pub backend: Backend,
    pub granted: Arc<[String]>,
    pub max_value_bytes: usize,
    /// Paces the warnings about refused buckets (a guest may loop on one).
    pub refused: Arc<std::sync::Mutex<crate::log_limit::LogLimit>>,
}

/// An open bucket (the `bucket` resource).
#[derive(Clone)]
pub enum Handle {
    Nats(Arc<kv::Store>),
    Memory(MemoryBuckets, String),
}

/// A compare-and-swap in progress (the `cas` resource).
pub struct Cas {
    bucket: Handle,
    key: String,
    /// The revision read; `None` when the key had no value.
    revision: Option<u64>,
    value: Option<Vec<u8>>,
}

/// A key JetStream accepts: letters, digits and `-/_=.`, not starting or
/// ending with `.`, no empty token.
pub fn check_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid key {key:?}: use letters, digits and - / _ = . (not at the start or end, no ..), at most 1024 bytes"
        )))
    }
}

/// Every key of a batch of `keys`, if there are not too many and each is
/// valid: the first fault found, before anything is read or written.
fn check_batch<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Result<(), Error> {
    if keys.len() > MAX_BATCH {
        return Err(Error::Other(format!(
            "a batch of {} keys is over the limit of {MAX_BATCH}",
            keys.len()
        )));
    }
    keys.into_iter().try_for_each(check_key)
}

/// Counts `more` bytes read by a `get-many` into `total`: an error once the
/// whole exceeds `limit`, the plugin's memory, which the answer could not
/// fit in anyway.
fn count_read(total: &mut usize, more: usize, limit: usize) -> Result<(), Error> {
    *total = total.saturating_add(more);
    if *total > limit {
        return Err(Error::Other(format!(
            "get-many: the values come to more than {limit} bytes, over the limit of the plugin's memory (limits.memory_mb)"
        )));
    }
    Ok(())
}

fn nats_error(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("key-value store: {e}"))
}

impl Handle {
    /// The key's value and revision.
    async fn entry(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, Error> {
        match self {
            Handle::Memory(m, b) => Ok(m.entry(b, key)),
            Handle::Nats(store) => {
                let entry = store.entry(key).await.map_err(nats_error)?;
                Ok(entry.and_then(|e| match e.operation {
                    kv::Operation::Put => Some((e.revision, e.value.to_vec())),
                    _ => None,
                }))
            }
        }
    }

    /// Writes `value` if the key is at `expected`; `Ok(false)` when it is not.
    async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<bool, Error> {
        match self {
            Handle::Memory(m, b) => Ok(m.put_if(b, key, expected, value).is_ok()),
            Handle::Nats(store) => {
                let value = Bytes::from(value);
                match expected {
                    Some(revision) => match store.update(key, value, revision).await {
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                        Err(e) => Err(nats_error(e)),
                    },
                    None => match store.create(key, value).await {
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                        Err(e) => Err(nats_error(e)),
                    },
                }
            }
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        match self {
            Handle::Memory(m, b) => {
                m.put(b, key, value);
                Ok(())
            }
            Handle::Nats(store) => store
                .put(key, Bytes::from(value))
                .await
                .map(drop)
                .map_err(nats_error),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            Handle::Memory(m, b) => {
                m.delete(b, key);
                Ok(())
            }
            Handle::Nats(store) => store.delete(key).await.map_err(nats_error),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, Error> {
        match self {
            Handle::Memory(m, b) => Ok(m.keys(b)),
            Handle::Nats(store) => {
                use futures::TryStreamExt;
                let mut keys: Vec<String> = store
                    .keys()
                    .await
                    .map_err(nats_error)?
                    .try_collect()
                    .await
                    .map_err(nats_error)?;
                keys.sort();
                Ok(keys)
            }
        }
    }
}

/// One page of `keys` (sorted) after `cursor`.
pub fn page(keys: Vec<String>, cursor: Option<&str>) -> KeyResponse {
    let start = match cursor {
        Some(c) => keys.partition_point(|k| k.as_str() <= c),
        None => 0,
    };
    let rest = &keys[start..];
    let page: Vec<String> = rest.iter().take(PAGE).cloned().collect();
    let cursor = (rest.len() > PAGE).then(|| page.last().cloned()).flatten();
    KeyResponse { keys: page, cursor }
}

impl State {
    fn bucket(&self, bucket: &Resource<Handle>) -> wasmtime::Result<Handle> {
        Ok(self.table.get(bucket)?.clone())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        let max = self.kv.max_value_bytes;
        if value.len() > max {
            return Err(Error::Other(format!(
                "value of {} bytes is over the limit of {max} (limits.kv_max_value_bytes)",
                value.len()
            )));
        }
        Ok(())
    }
}

impl store::Host for State {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Handle>, Error>> {
        if !self.kv.granted.contains(&identifier) {
            let logged = self
                .kv
                .refused
                .lock()
                .unwrap()
                .admit(std::time::Instant::now());
            if let Some(suppressed) = logged {
                // The name is the guest's: escaped, so it cannot forge a line.
                let bucket = crate::guest_log::clean(&identifier);
                tracing::warn!(plugin = %self.plugin, %bucket, suppressed, "key-value bucket refused: not in the plugin's [capabilities] keyvalue list");
            }
            return Ok(Err(Error::NoSuchStore));
        }
        let handle = match self.kv.backend.open(&identifier).await {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(handle)?))
    }
}

impl store::HostBucket for State {
    async fn get(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(handle.entry(&key).await.map(|e| e.map(|(_, v)| v)))
    }

    async fn set(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key).and_then(|()| self.check_value(&value)) {
            return Ok(Err(e));
        }
        Ok(handle.put(&key, value).await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(handle.delete(&key).await)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(handle.entry(&key).await.map(|e| e.is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Handle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let handle = self.bucket(&bucket)?;
        Ok(handle
            .keys()
            .await
            .map(|keys| page(keys, cursor.as_deref())))
    }

    async fn drop(&mut self, bucket: Resource<Handle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for State {
    async fn increment(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        for _ in 0..INCREMENT_TRIES {
            let (revision, current) = match handle.entry(&key).await {
                Ok(Some((rev, value))) => match std::str::from_utf8(&value)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                {
                    Some(n) => (Some(rev), n),
                    None => {
                        return Ok(Err(Error::Other(format!(
                            "key {key:?} does not hold a number"
                        ))));
                    }
                },
                Ok(None) => (None, 0),
                Err(e) => return Ok(Err(e)),
            };
            let Some(next) = current.checked_add(delta) else {
                return Ok(Err(Error::Other(format!(
                    "key {key:?}: increment overflows"
                ))));
            };
            match handle
                .put_if(&key, revision, next.to_string().into_bytes())
                .await
            {
                Ok(true) => return Ok(Ok(next)),
                Ok(false) => continue,
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Err(Error::Other(format!(
            "key {key:?}: increment lost {INCREMENT_TRIES} races in a row"
        ))))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let cas = self.table.delete(cas)?;
        if let Err(e) = self.check_value(&value) {
            return Ok(Err(CasError::StoreError(e)));
        }
        match cas.bucket.put_if(&cas.key, cas.revision, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Lost the race: a fresh handle at the key as it is now.
                let fresh = match cas.bucket.entry(&cas.key).await {
                    Ok(entry) => Cas {
                        revision: entry.as_ref().map(|(r, _)| *r),
                        value: entry.map(|(_, v)| v),
                        ..cas
                    },
                    Err(e) => return Ok(Err(CasError::StoreError(e))),
                };
                Ok(Err(CasError::CasFailed(self.table.push(fresh)?)))
            }
            Err(e) => Ok(Err(CasError::StoreError(e))),
        }
    }
}

impl batch::Host for State {
    async fn get_many(
        &mut self,
        bucket: Resource<Handle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        use futures::StreamExt as _;
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_batch(keys.iter().map(String::as_str)) {
            return Ok(Err(e));
        }
        let limit = self.memory.limit();
        let mut values = Vec::with_capacity(keys.len());
        let mut total = 0;
        let mut reads = futures::stream::iter(keys)
            .map(|key| {
                let handle = &handle;
                async move { Ok::<_, Error>(handle.entry(&key).await?.map(|(_, v)| (key, v))) }
            })
            .buffered(BATCH_IN_FLIGHT);
        while let Some(read) = reads.next().await {
            let value = match read {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            let size = value.as_ref().map_or(0, |(k, v)| k.len() + v.len());
            if let Err(e) = count_read(&mut total, size, limit) {
                return Ok(Err(e));
            }
            values.push(value);
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Handle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        use futures::TryStreamExt as _;
        let handle = self.bucket(&bucket)?;
        let checked = check_batch(key_values.iter().map(|(k, _)| k.as_str()))
            .and_then(|()| key_values.iter().try_for_each(|(_, v)| self.check_value(v)));
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        Ok(futures::stream::iter(key_values.into_iter().map(Ok))
            .try_for_each_concurrent(BATCH_IN_FLIGHT, |(key, value)| {
                let handle = &handle;
                async move { handle.put(&key, value).await }
            })
            .await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Handle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        use futures::TryStreamExt as _;
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_batch(keys.iter().map(String::as_str)) {
            return Ok(Err(e));
        }
        Ok(futures::stream::iter(keys.into_iter().map(Ok))
            .try_for_each_concurrent(BATCH_IN_FLIGHT, |key| {
                let handle = &handle;
                async move { handle.delete(&key).await }
            })
            .await)
    }
}

impl atomics::HostCas for State {
    async fn new(
        &mut self,
        bucket: Resource<Handle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let handle = self.bucket(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let entry = match handle.entry(&key).await {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        let cas = Cas {
            bucket: handle,
            key,
            revision: entry.as_ref().map(|(r, _)| *r),
            value: entry.map(|(_, v)| v),
        };
        Ok(Ok(self.table.push(cas)?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.value.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_jetstream_rules() {
        for good in ["apples", "stock.apples", "a/b_c-d=e", "A1"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "é"] {
            let Err(Error::Other(why)) = check_key(bad) else {
                panic!("{bad:?} accepted")
            };
            assert!(why.contains("invalid key"), "{why}");
        }
    }

    #[test]
    fn pages_continue_after_the_cursor() {
        let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let first = page(keys.clone(), None);
        assert_eq!(first.keys.len(), PAGE);
        let second = page(keys.clone(), first.cursor.as_deref());
        assert_eq!(second.keys[0], "k01000");
        let third = page(keys.clone(), second.cursor.as_deref());
        assert_eq!(third.keys.len(), 500);
        assert_eq!(third.cursor, None);
        assert_eq!(page(Vec::new(), None).keys.len(), 0);
    }

    #[test]
    fn a_batch_is_checked_whole_before_anything_is_done() {
        let keys = |v: &'static [&'static str]| v.iter().copied();
        assert!(check_batch(keys(&[])).is_ok());
        assert!(check_batch(keys(&["a", "b.c"])).is_ok());
        let Err(Error::Other(why)) = check_batch(keys(&["a", "b c", ".d"])) else {
            panic!("an invalid key accepted")
        };
        assert!(why.starts_with("invalid key \"b c\""), "{why}");

        let many: Vec<String> = (0..=MAX_BATCH).map(|i| format!("k{i}")).collect();
        assert!(check_batch(many[..MAX_BATCH].iter().map(String::as_str)).is_ok());
        let Err(Error::Other(why)) = check_batch(many.iter().map(String::as_str)) else {
            panic!("{} keys accepted", many.len())
        };
        assert_eq!(why, "a batch of 1001 keys is over the limit of 1000");
    }

    #[test]
    fn what_get_many_reads_must_fit_the_plugins_memory() {
        let mut total = 0;
        assert!(count_read(&mut total, 600, 1000).is_ok());
        assert!(count_read(&mut total, 400, 1000).is_ok());
        let Err(Error::Other(why)) = count_read(&mut total, 1, 1000) else {
            panic!("1001 bytes fit in 1000")
        };
        assert!(why.contains("over the limit"), "{why}");
        let mut total = usize::MAX - 1;
        assert!(count_read(&mut total, 10, usize::MAX - 1).is_err());
    }
}
