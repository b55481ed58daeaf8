//! How many replicas the streams and key-value buckets evhost creates get
//! (`run --replicas`, `EVHOST_REPLICAS`, `replicas` in the configuration
//! file; 1 unless given), and the one place that creates them: a plugin's
//! `create_stream`, a dead-letter stream (`create_dead_letter_stream`, or
//! `evhost dev`'s), the `dedup` bucket and the `[capabilities] keyvalue`
//! buckets.
//!
//! A stream that exists is used as it is: evhost never edits one. When it
//! holds fewer replicas than asked, a warning names it (once per stream and
//! process), since the data in it is then lost with fewer servers than the
//! operator planned for.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use async_nats::jetstream::{self, stream};

/// The replica count of what evhost creates in JetStream: 1 to
/// [`Replicas::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas(usize);

/// A replica count JetStream cannot keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "replicas must be a whole number from 1 to {max} (JetStream keeps at most {max} copies of a stream), not {given:?}",
    max = Replicas::MAX
)]
pub struct ReplicasError {
    given: String,
}

impl Replicas {
    /// The most copies of a stream JetStream keeps.
    pub const MAX: usize = 5;

    /// `n` replicas, if JetStream can keep that many.
    pub fn new(n: i64) -> Result<Self, ReplicasError> {
        match usize::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Replicas(n)),
            _ => Err(ReplicasError {
                given: n.to_string(),
            }),
        }
    }

    /// The count.
    pub fn get(self) -> usize {
        self.0
    }

    /// Whether a stream holding `found` replicas (the server says 0 for a
    /// stream made without a count: one) has fewer than these.
    fn wanted_over(self, found: usize) -> bool {
        found.max(1) < self.0
    }
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas(1)
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Replicas {
    type Err = ReplicasError;

    fn from_str(s: &str) -> Result<Self, ReplicasError> {
        match s.trim().parse::<i64>() {
            Ok(n) => Replicas::new(n),
            Err(_) => Err(ReplicasError {
                given: s.to_string(),
            }),
        }
    }
}

/// Stream `config.name` as it is when it exists, else created with
/// `replicas` copies.
pub async fn get_or_create(
    js: &jetstream::Context,
    config: stream::Config,
    replicas: Replicas,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            num_replicas: replicas.get(),
            ..config
        })
        .await?;
    warn_if_fewer(&stream.cached_info().config, replicas);
    Ok(stream)
}

/// Logs (once per stream and process) that the stream `config` describes
/// holds fewer replicas than `replicas`.
pub fn warn_if_fewer(config: &stream::Config, replicas: Replicas) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if !replicas.wanted_over(config.num_replicas) {
        return;
    }
    let first = WARNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(config.name.clone());
    if first {
        tracing::warn!(
            stream = %config.name,
            replicas = config.num_replicas.max(1),
            wanted = replicas.get(),
            "the stream has fewer replicas than --replicas asks; evhost uses an existing stream as it is (raise them with `nats stream edit {} --replicas {}`)",
            config.name,
            replicas
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_five_replicas_are_taken_and_nothing_else() {
        for n in 1..=5 {
            assert_eq!(Replicas::new(n).unwrap().get(), n as usize);
            assert_eq!(n.to_string().parse::<Replicas>().unwrap().get(), n as usize);
        }
        for bad in [0, 6, -1, i64::MAX, i64::MIN] {
            let err = Replicas::new(bad).unwrap_err().to_string();
            assert!(
                err.contains("from 1 to 5") && err.contains(&bad.to_string()),
                "{err}"
            );
        }
        for bad in ["", "three", "3.0", "0x3", "99999999999999999999"] {
            let err = bad.parse::<Replicas>().unwrap_err().to_string();
            assert!(err.contains("from 1 to 5"), "{err}");
        }
        assert_eq!(Replicas::default().get(), 1);
    }

    #[test]
    fn a_stream_is_short_only_with_fewer_replicas_than_asked() {
        let three = Replicas::new(3).unwrap();
        assert!(three.wanted_over(0), "made without a count: one replica");
        assert!(three.wanted_over(1));
        assert!(three.wanted_over(2));
        assert!(!three.wanted_over(3));
        assert!(!three.wanted_over(5), "more than asked is fine");
        assert!(!Replicas::default().wanted_over(0));
    }
}
