//! The body of a plugin's outgoing HTTP request, as the host hands it to
//! hyper: the guest's `wasi:http` body, drained to its end when the request
//! is given up on before it was all sent.
//!
//! A guest writes its request body into a stream that `wasmtime-wasi-http`
//! feeds into the request. When the request fails before the body was read
//! (the destination refused by the host, the connection refused or timed
//! out, the server answering early), the request and its body are dropped,
//! and the guest's next write or `finish` fails. A guest is entitled to
//! learn the request's fate from its response future alone, and some do not
//! cope with a failed write: StarlingMonkey, the JavaScript engine of
//! componentize-js, then aborts the whole handler ("event loop error, but no
//! exception is pending"), a trap, instead of rejecting `fetch`. So what is
//! left of the body is read and thrown away on a task of its own, until the
//! guest finishes or drops it, or writes nothing for `idle`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, WasiBody};

/// A request body that drains itself when dropped unfinished.
pub struct RequestBody {
    inner: Option<WasiBody>,
    /// How long the drain waits for the guest's next write.
    idle: Duration,
}

impl RequestBody {
    /// Wraps `body`; a drain after a failure waits at most `idle` for each
    /// write of the guest.
    pub fn new(body: WasiBody, idle: Duration) -> Self {
        RequestBody {
            inner: Some(body),
            idle,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        // What the guest has already written or finished is read here: a
        // sent request's body usually has only its end left (hyper stops at
        // its `content-length`), and needs no task.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if body.is_end_stream() {
                return;
            }
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(None | Some(Err(_))) => return,
                Poll::Pending => break,
            }
        }
        // Outside a runtime (a test, or the host shutting down) there is no
        // guest left to write: nothing to drain for.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body, self.idle));
        }
    }
}

/// Reads `body` to its end (or its first error), throwing the bytes away;
/// gives up when no frame comes for `idle`.
async fn drain(mut body: WasiBody, idle: Duration) {
    while let Ok(Some(Ok(_))) = tokio::time::timeout(idle, body.frame()).await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn wasi_body(body: impl Body<Data = Bytes, Error = Error> + Send + 'static) -> WasiBody {
        body.boxed_unsync()
    }

    #[tokio::test]
    async fn a_dropped_unfinished_body_is_read_to_its_end() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Error>>(1);
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let body = RequestBody::new(wasi_body(StreamBody::new(stream)), Duration::from_secs(5));
        drop(body);
        // With a capacity of one, three writes only go through if something
        // reads them: the drain does.
        for chunk in ["a", "b", "c"] {
            tx.send(Ok(Frame::data(Bytes::from(chunk))))
                .await
                .expect("the drain reads the body");
        }
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_the_guest_already_finished_is_read_at_once_without_a_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Error>>(4);
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let body = RequestBody::new(wasi_body(StreamBody::new(stream)), Duration::from_secs(5));
        for chunk in ["a", "b"] {
            tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.unwrap();
        }
        drop(tx);
        let metrics = tokio::runtime::Handle::current().metrics();
        drop(body);
        assert_eq!(metrics.num_alive_tasks(), 0, "no drain task");
    }

    #[tokio::test]
    async fn a_finished_or_forwarded_body_is_passed_through_untouched() {
        let mut body = RequestBody::new(
            wasi_body(Full::new(Bytes::from("whole")).map_err(|never| match never {})),
            Duration::from_secs(5),
        );
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "whole");
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn the_drain_gives_up_on_a_guest_that_stops_writing() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Error>>(1);
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        drop(RequestBody::new(
            wasi_body(StreamBody::new(stream)),
            Duration::from_millis(50),
        ));
        // The writer stays open and silent: the drain lets go of the body
        // (closing it) once `idle` has passed.
        tokio::time::timeout(Duration::from_secs(10), tx.closed())
            .await
            .expect("the drain let go of a silent body");
    }
}
