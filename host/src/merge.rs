//! Reading several streams as one: a lane's subscriptions (one per subject)
//! merged fairly, each poll starting after the stream that gave the last
//! item, so a busy subject cannot starve a quiet one. Unlike `SelectAll`,
//! which re-queues a freshly allocated future for every item it yields, a
//! message passes through here with no allocation and no extra hand-off.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

/// Streams read as one. Ends when every stream has ended.
pub struct Merged<S> {
    streams: Vec<S>,
    /// Where the next poll starts: just after the stream that gave the last
    /// item.
    next: usize,
}

impl<S> Merged<S> {
    /// The streams still open, for draining them.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, S> {
        self.streams.iter_mut()
    }
}

impl<S> FromIterator<S> for Merged<S> {
    fn from_iter<I: IntoIterator<Item = S>>(streams: I) -> Self {
        Merged {
            streams: streams.into_iter().collect(),
            next: 0,
        }
    }
}

impl<S: Stream + Unpin> Stream for Merged<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        // Every open stream is polled before this returns `Pending`, so each
        // has this task's waker.
        'restart: loop {
            let len = this.streams.len();
            if len == 0 {
                return Poll::Ready(None);
            }
            for k in 0..len {
                let at = (this.next + k) % len;
                match this.streams[at].poll_next_unpin(cx) {
                    Poll::Ready(Some(item)) => {
                        this.next = at + 1;
                        return Poll::Ready(Some(item));
                    }
                    Poll::Ready(None) => {
                        // Rare (a drained subscription): drop it and start over.
                        this.streams.swap_remove(at);
                        this.next = at;
                        continue 'restart;
                    }
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    #[tokio::test]
    async fn items_from_every_stream_arrive_in_turn_and_the_end_waits_for_all() {
        let (a_tx, a) = mpsc::unbounded::<&str>();
        let (b_tx, b) = mpsc::unbounded::<&str>();
        for item in ["a1", "a2", "a3"] {
            a_tx.unbounded_send(item).unwrap();
        }
        b_tx.unbounded_send("b1").unwrap();
        let mut merged: Merged<_> = [a, b].into_iter().collect();
        let first: Vec<_> = [
            merged.next().await,
            merged.next().await,
            merged.next().await,
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(
            first,
            vec!["a1", "b1", "a2"],
            "a busy stream does not hold back a quiet one"
        );

        drop(a_tx);
        assert_eq!(
            merged.next().await,
            Some("a3"),
            "what was sent still arrives"
        );
        let pending = futures::poll!(merged.next());
        assert!(pending.is_pending(), "b is open: not the end yet");
        b_tx.unbounded_send("b2").unwrap();
        assert_eq!(merged.next().await, Some("b2"));
        drop(b_tx);
        assert_eq!(merged.next().await, None, "every stream has ended");
        assert_eq!(merged.iter_mut().count(), 0);
    }

    #[tokio::test]
    async fn a_waiting_merge_wakes_for_any_stream() {
        let (a_tx, a) = mpsc::unbounded::<u32>();
        let (b_tx, b) = mpsc::unbounded::<u32>();
        let mut merged: Merged<_> = [a, b].into_iter().collect();
        let waiter = tokio::spawn(async move { merged.next().await });
        tokio::task::yield_now().await;
        b_tx.unbounded_send(7).unwrap();
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(
            woken
                .expect("the second stream's item woke the merge")
                .unwrap(),
            Some(7)
        );
        drop(a_tx);
    }
}
