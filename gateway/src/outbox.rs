//! The frames waiting to be written to one WebSocket connection: its own (`user_sync`,
//! `history`, acks, errors) and the channel's broadcasts, in one place with one wake-up.
//!
//! Its own frames go out first, so the greeting precedes anything broadcast. Both queues
//! are bounded (a client that stops reading is closed, not buffered) and hold memory only
//! while frames wait: a queue gives its buffer back when it empties, so an idle connection
//! keeps no queue allocation at all (two bounded channels cost about 3 KiB per connection).

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// Frames for this connection alone that may wait; more means it stopped reading.
pub const OWN_FRAMES: usize = 64;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the frame or byte bound: the client is too slow to keep up.
    Full,
    /// The writer has stopped; the connection is going away.
    Closed,
}

pub struct Outbox {
    queues: Mutex<Queues>,
    ready: Notify,
    /// Broadcast frames and bytes that may wait.
    frame_limit: usize,
    byte_limit: usize,
}

#[derive(Default)]
struct Queues {
    own: VecDeque<Utf8Bytes>,
    broadcast: VecDeque<Utf8Bytes>,
    broadcast_bytes: usize,
    closed: bool,
}

/// Takes the front frame, and gives the buffer back once the queue is empty.
fn pop_front(queue: &mut VecDeque<Utf8Bytes>) -> Option<Utf8Bytes> {
    let frame = queue.pop_front()?;
    if queue.is_empty() {
        *queue = VecDeque::new();
    }
    Some(frame)
}

impl Outbox {
    pub fn new(frame_limit: usize, byte_limit: usize) -> Self {
        Outbox {
            queues: Mutex::default(),
            ready: Notify::new(),
            frame_limit,
            byte_limit,
        }
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame for this connection alone.
    pub fn push_own(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        {
            let mut queues = self.queues();
            if queues.closed {
                return Err(Refused::Closed);
            }
            if queues.own.len() >= OWN_FRAMES {
                return Err(Refused::Full);
            }
            queues.own.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues a broadcast frame within the frame and byte bounds.
    pub fn push_broadcast(&self, frame: Utf8Bytes) -> Result<(), Refused> {
        {
            let mut queues = self.queues();
            if queues.closed {
                return Err(Refused::Closed);
            }
            if queues.broadcast.len() >= self.frame_limit
                || queues.broadcast_bytes + frame.len() > self.byte_limit
            {
                return Err(Refused::Full);
            }
            queues.broadcast_bytes += frame.len();
            queues.broadcast.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Queues a frame that may be lost (a cursor position) only while the broadcasts waiting
    /// are under half of both bounds: under backpressure these go first, and they never get
    /// a client closed. False when it was dropped.
    pub fn push_droppable(&self, frame: Utf8Bytes) -> bool {
        {
            let mut queues = self.queues();
            let roomy = queues.broadcast.len() * 2 < self.frame_limit
                && queues.broadcast_bytes + frame.len() <= self.byte_limit / 2;
            if queues.closed || !roomy {
                return false;
            }
            queues.broadcast_bytes += frame.len();
            queues.broadcast.push_back(frame);
        }
        self.ready.notify_one();
        true
    }

    /// The next frame to write: this connection's own first.
    pub fn pop(&self) -> Option<Utf8Bytes> {
        let mut queues = self.queues();
        if let Some(frame) = pop_front(&mut queues.own) {
            return Some(frame);
        }
        let frame = pop_front(&mut queues.broadcast)?;
        queues.broadcast_bytes -= frame.len();
        Some(frame)
    }

    /// Waits until a frame may have been queued since the last `pop` that found none.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The writer stopped: what waits is dropped and later frames are refused.
    pub fn close(&self) {
        let mut queues = self.queues();
        queues.closed = true;
        queues.own = VecDeque::new();
        queues.broadcast = VecDeque::new();
        queues.broadcast_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Utf8Bytes {
        Utf8Bytes::from(text.to_owned())
    }

    #[test]
    fn own_frames_go_before_broadcasts() {
        let outbox = Outbox::new(8, 1 << 20);
        outbox.push_broadcast(frame("b1")).unwrap();
        outbox.push_own(frame("o1")).unwrap();
        outbox.push_broadcast(frame("b2")).unwrap();
        let order: Vec<String> = std::iter::from_fn(|| outbox.pop())
            .map(|f| f.as_str().to_owned())
            .collect();
        assert_eq!(order, ["o1", "b1", "b2"]);
    }

    #[test]
    fn broadcasts_are_bounded_in_frames_and_bytes() {
        let outbox = Outbox::new(2, 1 << 20);
        outbox.push_broadcast(frame("a")).unwrap();
        outbox.push_broadcast(frame("b")).unwrap();
        assert_eq!(outbox.push_broadcast(frame("c")), Err(Refused::Full));
        outbox.pop();
        assert_eq!(outbox.push_broadcast(frame("c")), Ok(()));

        let outbox = Outbox::new(100, 10);
        outbox.push_broadcast(frame("12345")).unwrap();
        outbox.push_broadcast(frame("12345")).unwrap();
        assert_eq!(outbox.push_broadcast(frame("1")), Err(Refused::Full));
        outbox.pop();
        assert_eq!(
            outbox.push_broadcast(frame("1")),
            Ok(()),
            "bytes given back"
        );
    }

    #[test]
    fn own_frames_are_bounded() {
        let outbox = Outbox::new(1, 1);
        for _ in 0..OWN_FRAMES {
            outbox.push_own(frame("x")).unwrap();
        }
        assert_eq!(outbox.push_own(frame("x")), Err(Refused::Full));
    }

    #[test]
    fn droppable_frames_stop_at_half_the_bounds() {
        let outbox = Outbox::new(4, 1 << 20);
        assert!(outbox.push_droppable(frame("c1")));
        assert!(outbox.push_droppable(frame("c2")));
        assert!(!outbox.push_droppable(frame("c3")), "half of 4 frames");
        outbox.push_broadcast(frame("chat")).unwrap();
        outbox.push_broadcast(frame("chat")).unwrap();
        assert_eq!(outbox.push_broadcast(frame("chat")), Err(Refused::Full));

        let outbox = Outbox::new(100, 20);
        assert!(outbox.push_droppable(frame("0123456789")));
        assert!(!outbox.push_droppable(frame("x")), "half of 20 bytes");
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let outbox = Outbox::new(100, 1 << 20);
        for _ in 0..10 {
            outbox.push_own(frame("o")).unwrap();
            outbox.push_broadcast(frame("b")).unwrap();
        }
        while outbox.pop().is_some() {}
        let queues = outbox.queues();
        assert_eq!(queues.own.capacity(), 0);
        assert_eq!(queues.broadcast.capacity(), 0);
        assert_eq!(queues.broadcast_bytes, 0);
    }

    #[test]
    fn a_closed_outbox_refuses_and_forgets() {
        let outbox = Outbox::new(8, 1 << 20);
        outbox.push_broadcast(frame("b")).unwrap();
        outbox.close();
        assert!(outbox.pop().is_none());
        assert_eq!(outbox.push_own(frame("o")), Err(Refused::Closed));
        assert_eq!(outbox.push_broadcast(frame("b")), Err(Refused::Closed));
        assert!(!outbox.push_droppable(frame("c")));
    }

    #[tokio::test]
    async fn a_push_wakes_the_writer_even_before_it_waits() {
        let outbox = Outbox::new(8, 1 << 20);
        outbox.push_broadcast(frame("b")).unwrap();
        // The permit is kept: a writer that looks only after the push still wakes.
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.ready())
            .await
            .expect("woken by the earlier push");
    }
}
