//! Lanes: how a plugin's `concurrency` is split over the cores, the set of
//! messages one lane has in flight, and the lane loop itself, the same for
//! core NATS and JetStream (what differs is the [`Intake`]). A lane drives
//! its messages inside its own task: a message is polled once where it
//! arrives, and kept only if it has to wait, so most messages cost no task,
//! no queue and no hand-off between threads.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

/// Where a lane takes its messages from: core NATS subscriptions or
/// JetStream pull requests.
pub trait Intake: Send {
    /// One message as taken.
    type Message: Send;

    /// The next message; `None` once nothing more will come. Cancel-safe: the
    /// lane drops this future whenever a message in flight finishes first.
    fn next(&mut self) -> impl Future<Output = Option<Self::Message>> + Send;

    /// The lane was told to stop: what to do about messages still coming.
    fn stop(&mut self) -> impl Future<Output = AfterStop> + Send;

    /// After the lane stopped taking: gives back what was taken but not
    /// started. Runs while the started ones finish.
    fn hand_back(self) -> impl Future<Output = ()> + Send;
}

/// What a lane does once told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Keep taking until [`Intake::next`] says `None` (core NATS: drained
    /// subscriptions deliver what the server had sent).
    Drain,
    /// Stop taking now (JetStream: what was pulled is handed back).
    Leave,
}

/// One lane: takes a message from `intake` only while fewer than `limit` are
/// in flight (backpressure), starts each with `start`, and drives those in
/// flight inside this task. On `stop` it does what the intake says, finishes
/// what it started, and returns.
pub async fn run<'a, I: Intake>(
    mut intake: I,
    limit: usize,
    stop: CancellationToken,
    mut start: impl FnMut(I::Message) -> Work<'a> + Send,
) {
    let mut in_flight = InFlight::default();
    let mut stopping = false;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        // Read from the token here (its node's lock, which only this lane
        // takes until the stop order comes): under load a message is always
        // ready and the `stopped` arm below is never reached.
        if !stopping && stop.is_cancelled() {
            stopping = true;
            if intake.stop().await == AfterStop::Leave {
                break;
            }
        }
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            msg = intake.next(), if in_flight.len() < limit => match msg {
                Some(msg) => in_flight.start(start(msg)).await,
                None => break, // nothing more will arrive
            },
            // Wakes a lane that is waiting when the order to stop comes.
            () = &mut stopped, if !stopping => {}
        }
    }
    tokio::join!(in_flight.finish(), intake.hand_back());
}

/// How many messages each lane may hold in flight: `concurrency` split over
/// one lane per core (never more lanes than `concurrency`, so a plugin with
/// `concurrency = 1` keeps one lane and its messages in order).
pub fn lane_limits(concurrency: usize, cores: usize) -> Vec<usize> {
    let concurrency = concurrency.max(1);
    let lanes = cores.clamp(1, concurrency);
    (0..lanes)
        .map(|i| concurrency / lanes + usize::from(i < concurrency % lanes))
        .collect()
}

/// The number of cores the host may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One message's handling, boxed where it is made: a message's future holds
/// the whole call state, and moving it (into a function, into a box) would
/// copy kilobytes per message.
pub type Work<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The messages one lane is handling.
#[derive(Default)]
pub struct InFlight<'a> {
    waiting: FuturesUnordered<Work<'a>>,
}

impl<'a> InFlight<'a> {
    /// Starts `work`: polls it once here; if it has to wait (for the handler,
    /// a publish ack, a retry delay) it is kept and driven by [`next`](Self::next).
    pub async fn start(&mut self, mut work: Work<'a>) {
        let finished =
            std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_ready())).await;
        if !finished {
            self.waiting.push(work);
        }
    }

    /// How many are still being handled.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Drives the waiting ones until one finishes; `None` when there are none.
    pub async fn next(&mut self) -> Option<()> {
        self.waiting.next().await
    }

    /// Drives every waiting one to the end.
    pub async fn finish(&mut self) {
        while self.waiting.next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_split_over_at_most_one_lane_per_core() {
        assert_eq!(lane_limits(16, 2), vec![8, 8]);
        assert_eq!(lane_limits(5, 2), vec![3, 2]);
        assert_eq!(lane_limits(256, 3), vec![86, 85, 85]);
        assert_eq!(
            lane_limits(1, 8),
            vec![1],
            "one in flight keeps one lane: order is kept"
        );
        assert_eq!(lane_limits(3, 8), vec![1, 1, 1]);
        assert_eq!(lane_limits(0, 0), vec![1]);
        for (c, n) in [(1, 1), (7, 3), (100, 7), (4096, 64)] {
            assert_eq!(lane_limits(c, n).iter().sum::<usize>(), c.max(1));
        }
    }

    #[tokio::test]
    async fn work_that_finishes_at_once_is_not_kept_and_waiting_work_is_driven() {
        let done = std::sync::atomic::AtomicUsize::new(0);
        let mut in_flight = InFlight::default();
        in_flight
            .start(Box::pin(async {
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }))
            .await;
        assert!(in_flight.is_empty(), "finished on its first poll");
        assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 1);

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        in_flight
            .start(Box::pin(async {
                let _ = rx.await;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }))
            .await;
        assert_eq!(in_flight.len(), 1, "waiting work is kept");
        tx.send(()).unwrap();
        assert_eq!(in_flight.next().await, Some(()));
        assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(in_flight.next().await, None);
    }
}
