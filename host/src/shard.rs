//! Shards: one thread per core, each running a single-threaded tokio runtime
//! with its own NATS connection. A core NATS lane runs on a shard and takes
//! its messages on that shard's connection, so a message is read, handled and
//! its outputs written on one thread: no hand-off between threads, and the
//! message's buffers freed on the thread that allocated them.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;
use async_nats::Client;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::bus;
use crate::nats_connection::NatsConnection;

thread_local! {
    /// The index of the shard whose thread this is; `None` off the shards.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the shard running the caller, or `None` on any other thread
/// (the main runtime, where JetStream consumers and loading run).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// The shards of one host.
pub struct Shards {
    shards: Vec<Shard>,
    /// Where the next plugin's lanes start (see [`Shards::deal`]).
    next: AtomicUsize,
}

/// One shard's thread, runtime and connection.
pub struct Shard {
    /// The shard's own connection to NATS.
    pub client: Client,
    /// The shard's runtime, for spawning lanes on it.
    pub handle: Handle,
    /// The thread, and the sender whose drop ends it; taken by
    /// [`Shards::stop`]. Dropping the `Shard` ends the thread too.
    running: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Shards {
    /// Starts `count` shards (at least one), each connected to `nats`.
    pub async fn start(nats: &NatsConnection, count: usize) -> anyhow::Result<Shards> {
        let mut shards = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            shards.push(Shard::start(nats, i).await?);
        }
        Ok(Shards {
            shards,
            next: AtomicUsize::new(0),
        })
    }

    /// The shards for a plugin's `lanes` lanes, in order: consecutive shards
    /// from where the last plugin's lanes ended, so a plugin's lanes never
    /// share a shard while there are shards enough, and plugins with one
    /// lane each still spread over the cores.
    pub fn deal(&self, lanes: usize) -> Vec<&Shard> {
        let start = self.next.fetch_add(lanes, Ordering::Relaxed);
        dealt(start, lanes, self.shards.len())
            .map(|i| &self.shards[i])
            .collect()
    }

    /// Every shard's connection.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.shards.iter().map(|s| &s.client)
    }

    /// Flushes what every shard has queued for NATS (the last outputs), then
    /// ends the shards' threads; a lane still running (a drain that timed
    /// out) ends with them.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let mut flushed = Ok(());
        for (i, shard) in self.shards.iter().enumerate() {
            if let Err(err) = shard.client.flush().await {
                flushed = Err(err)
                    .with_context(|| format!("cannot flush the last outputs of shard {i} to NATS"));
            }
        }
        let threads: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| s.running.lock().unwrap().take())
            .map(|(_stop, thread)| thread)
            .collect();
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .context("cannot join the shard threads")?;
        flushed
    }
}

impl Shard {
    /// Starts shard `index`'s thread and connects it; returns once connected.
    async fn start(nats: &NatsConnection, index: usize) -> anyhow::Result<Shard> {
        let (started, connected) = oneshot::channel::<anyhow::Result<(Client, Handle)>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let nats = nats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("evhost-shard-{index}"))
            .spawn(move || {
                CURRENT.with(|c| c.set(Some(index)));
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = started.send(Err(err).context("cannot start a shard runtime"));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Connected from inside the shard, so the connection's
                    // task runs on the shard's thread.
                    match bus::connect(&nats, &format!("evhost shard {index}")).await {
                        Ok(client) => {
                            let _ = started.send(Ok((client, Handle::current())));
                            // Runs the shard's lanes until the stop sender
                            // is dropped.
                            let _ = stopped.await;
                        }
                        Err(err) => {
                            let _ = started.send(Err(err));
                        }
                    }
                });
            })
            .context("cannot start a shard thread")?;
        let (client, handle) = connected
            .await
            .context("a shard thread ended while connecting")??;
        Ok(Shard {
            client,
            handle,
            running: Mutex::new(Some((stop, thread))),
        })
    }
}

/// The shard indices for `lanes` lanes dealt from `start` round `shards`.
fn dealt(start: usize, lanes: usize, shards: usize) -> impl Iterator<Item = usize> {
    (0..lanes).map(move |i| start.wrapping_add(i) % shards)
}

#[cfg(test)]
mod tests {
    use super::dealt;

    #[test]
    fn lanes_are_dealt_round_the_shards() {
        let deal = |start, lanes, shards| dealt(start, lanes, shards).collect::<Vec<_>>();
        assert_eq!(
            deal(0, 2, 2),
            vec![0, 1],
            "a plugin's two lanes on two shards"
        );
        assert_eq!(deal(1, 2, 2), vec![1, 0]);
        assert_eq!(deal(3, 1, 2), vec![1], "one-lane plugins alternate");
        assert_eq!(deal(4, 1, 2), vec![0]);
        assert_eq!(deal(5, 3, 4), vec![1, 2, 3]);
        assert_eq!(deal(7, 2, 1), vec![0, 0], "one shard takes every lane");
        assert_eq!(deal(usize::MAX, 2, 2), vec![1, 0], "the counter may wrap");
    }
}
