//! A channel bounded in bytes, from an async producer (a body arriving at the proxy) to a
//! decode (GStreamer's `appsrc`, on a blocking thread). The producer either waits while more
//! than `window` bytes sit unread (`send`: back-pressure, the client is slowed to the decode's
//! pace) or learns at once that the decode is behind (`try_send`), and a decode that stops
//! early (a block found, a limit hit) tells the producer by closing: it never waits on a
//! reader that is gone.

use std::collections::VecDeque;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

/// The decode has stopped reading (it ended, failed or decided early).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the decode has stopped reading")]
pub struct Closed;

/// Why `try_send` did not take a chunk.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// More than the window is queued: the decode is behind.
    #[error("the decode is more than its window behind")]
    Full(Bytes),
    #[error("the decode has stopped reading")]
    Closed(Bytes),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Bytes taken by the decode so far.
    taken: u64,
    /// The producer is done (dropped): the decode sees the end once the queue is empty.
    finished: bool,
    /// The decode is done: sends fail.
    closed: bool,
}

struct Shared {
    window: usize,
    state: Mutex<State>,
    /// Wakes the decode: a chunk or the end arrived.
    arrived: Condvar,
    /// Wakes the producer: room freed, or the decode closed.
    room: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A channel letting at most `window` bytes wait unread (a chunk larger than the window still
/// goes through alone, when nothing else is queued).
pub fn channel(window: usize) -> (ChunkSender, ChunkReceiver) {
    let shared = Arc::new(Shared {
        window: window.max(1),
        state: Mutex::default(),
        arrived: Condvar::new(),
        room: Notify::new(),
    });
    (
        ChunkSender {
            shared: shared.clone(),
        },
        ChunkReceiver { shared },
    )
}

/// The producer's end. Dropping it ends the input.
pub struct ChunkSender {
    shared: Arc<Shared>,
}

impl ChunkSender {
    /// Queues `chunk` now if there is room; never waits.
    pub fn try_send(&self, chunk: Bytes) -> Result<(), TrySendError> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(TrySendError::Closed(chunk));
        }
        if st.queued > 0 && st.queued + chunk.len() > self.shared.window {
            return Err(TrySendError::Full(chunk));
        }
        st.queued += chunk.len();
        st.queue.push_back(chunk);
        drop(st);
        self.shared.arrived.notify_one();
        Ok(())
    }

    /// Queues `chunk`, waiting while the window is full.
    pub async fn send(&self, mut chunk: Bytes) -> Result<(), Closed> {
        loop {
            // Registered before the check, so a wake between the check and the wait is kept.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Closed),
                Err(TrySendError::Full(c)) => chunk = c,
            }
            room.await;
        }
    }

    /// Bytes queued and not yet taken by the decode.
    pub fn lag(&self) -> usize {
        self.shared.lock().queued
    }

    /// Bytes the decode has taken so far.
    pub fn taken(&self) -> u64 {
        self.shared.lock().taken
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl Drop for ChunkSender {
    fn drop(&mut self) {
        self.shared.lock().finished = true;
        self.shared.arrived.notify_all();
    }
}

/// The decode's end. Dropping it (or `close`) releases a waiting producer with `Closed`.
pub struct ChunkReceiver {
    shared: Arc<Shared>,
}

impl ChunkReceiver {
    /// The next chunk; `Timeout` when none came within `wait`, `Disconnected` at the end
    /// (the producer is gone and everything it sent was taken).
    pub fn recv_timeout(&self, wait: Duration) -> Result<Bytes, RecvTimeoutError> {
        let until = Instant::now() + wait;
        let mut st = self.shared.lock();
        loop {
            if let Some(chunk) = st.queue.pop_front() {
                st.queued -= chunk.len();
                st.taken += chunk.len() as u64;
                drop(st);
                self.shared.room.notify_one();
                return Ok(chunk);
            }
            if st.finished {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            st = self
                .shared
                .arrived
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A guard that closes the channel when dropped, wherever the receiver itself ends up
    /// (inside a pipeline's callbacks, which may outlive the decode).
    pub(crate) fn closer(&self) -> Closer {
        Closer(self.shared.clone())
    }

    /// Stops reading: queued chunks are dropped and the producer's sends fail from now on.
    pub fn close(&self) {
        close(&self.shared);
    }
}

pub(crate) struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        close(&self.0);
    }
}

fn close(shared: &Shared) {
    {
        let mut st = shared.lock();
        st.closed = true;
        st.queue.clear();
        st.queued = 0;
    }
    shared.room.notify_waiters();
    shared.room.notify_one();
}

impl Drop for ChunkReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn the_window_bounds_what_waits_unread() {
        let (tx, rx) = channel(10);
        tx.try_send(chunk(6)).unwrap();
        assert!(matches!(tx.try_send(chunk(6)), Err(TrySendError::Full(_))));
        tx.try_send(chunk(4)).unwrap();
        assert_eq!(tx.lag(), 10);
        assert_eq!(rx.recv_timeout(Duration::ZERO).unwrap().len(), 6);
        assert_eq!((tx.lag(), tx.taken()), (4, 6));
        // Alone, a chunk larger than the window still goes.
        assert_eq!(rx.recv_timeout(Duration::ZERO).unwrap().len(), 4);
        tx.try_send(chunk(50)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::ZERO).unwrap().len(), 50);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_waits_for_room_and_resumes() {
        let (tx, rx) = channel(8);
        let reader = std::thread::spawn(move || {
            let mut total = 0;
            while let Ok(c) = rx.recv_timeout(Duration::from_secs(5)) {
                std::thread::sleep(Duration::from_millis(2));
                total += c.len();
            }
            total
        });
        for _ in 0..100 {
            tx.send(chunk(5)).await.unwrap();
            assert!(tx.lag() <= 10, "lag {}", tx.lag());
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 500);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decode_that_stops_releases_a_waiting_producer() {
        let (tx, rx) = channel(4);
        tx.send(chunk(4)).await.unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(rx);
        });
        // Full: waits until the decode goes, then fails instead of hanging.
        let sent = tokio::time::timeout(Duration::from_secs(5), tx.send(chunk(4))).await;
        assert_eq!(
            sent.expect("a closed decode must not leave the producer waiting"),
            Err(Closed)
        );
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(chunk(1)),
            Err(TrySendError::Closed(_))
        ));
        closer.join().unwrap();
    }
}
