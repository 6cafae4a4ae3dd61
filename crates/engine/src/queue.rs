//! A session's outbound queue: bounded in items, one consumer, and no memory while empty
//! (a channel would keep a block of slots allocated for every session, idle or not).

use crate::socket::Outgoing;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Capacity kept after the queue drains; a burst's larger buffer is given back.
const KEEP: usize = 4;

/// The queue itself, shared by its two sides.
struct QueueState {
    items: Mutex<VecDeque<Outgoing>>,
    waker: AtomicWaker,
    cap: usize,
}

/// The sending side (the session keeps it).
pub(crate) struct Sender(Arc<QueueState>);

/// The receiving side, held by whichever transport is writing.
pub(crate) struct Receiver(Arc<QueueState>);

/// A queue holding at most `cap` items.
pub(crate) fn queue(cap: usize) -> (Sender, Receiver) {
    let shared = Arc::new(QueueState {
        items: Mutex::new(VecDeque::new()),
        waker: AtomicWaker::new(),
        cap,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `item`, or gives it back when the queue is full.
    pub(crate) fn try_send(&self, item: Outgoing) -> Result<(), Outgoing> {
        {
            let mut items = self.0.items.lock();
            if items.len() >= self.0.cap {
                return Err(item);
            }
            items.push_back(item);
        }
        self.0.waker.wake();
        Ok(())
    }
}

impl Receiver {
    fn pop(&self) -> Option<Outgoing> {
        let mut items = self.0.items.lock();
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > KEEP {
            *items = VecDeque::new();
        }
        item
    }

    /// The next item, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<Outgoing, ()> {
        self.pop().ok_or(())
    }

    /// The next item; wakes `cx` when one is queued.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        if let Some(item) = self.pop() {
            return Poll::Ready(Some(item));
        }
        self.0.waker.register(cx.waker());
        // An item queued between the first look and the registration would not wake us.
        match self.pop() {
            Some(item) => Poll::Ready(Some(item)),
            None => Poll::Pending,
        }
    }

    /// Waits for the next item.
    pub(crate) async fn recv(&mut self) -> Option<Outgoing> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}
