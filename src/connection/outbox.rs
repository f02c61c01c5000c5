//! The outbox: what senders queue for the I/O thread to write, bounded in
//! messages and in payload bytes (a budget kept here, over an unbounded
//! crossbeam channel: a bounded one allocates every slot up front, which at
//! the default bound is tens of KiB per idle connection; the list flavor
//! allocates a block of slots at a time, as messages come).
//!
//! Owns both bounds and the waits for room. It never touches the socket: the
//! I/O thread takes messages out with its receiver and gives their bytes back
//! with [`Outbox::release`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel as channel;

use crate::error::{Error, Phase};
use crate::queue::payload_len;
use crate::Message;

/// How long a sender may wait for room.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    No,
    Forever,
    Until(Instant),
}

/// Why a message was not queued; it is handed back.
#[derive(Debug)]
pub(super) enum Refused {
    Full(Message),
    Timeout(Message),
    Closed(Message),
}

impl Refused {
    /// The error a blocking send reports (the message is dropped).
    pub(super) fn into_error(self) -> Error {
        match self {
            Refused::Timeout(_) | Refused::Full(_) => Error::Timeout(Phase::Send),
            Refused::Closed(_) => Error::Closed(None),
        }
    }
}

pub(super) struct Outbox {
    tx: channel::Sender<Message>,
    /// Messages and payload bytes queued now.
    used: Mutex<Used>,
    room: Condvar,
    cap_messages: usize,
    cap_bytes: usize,
    closed: AtomicBool,
}

impl Outbox {
    /// An outbox of at most `messages` and `bytes` (an empty outbox takes
    /// any one message), and the I/O thread's receiver.
    pub(super) fn new(messages: usize, bytes: usize) -> (Outbox, channel::Receiver<Message>) {
        let (tx, rx) = channel::unbounded();
        let outbox = Outbox {
            tx,
            used: Mutex::new(Used::default()),
            room: Condvar::new(),
            cap_messages: messages.max(1),
            cap_bytes: bytes.max(1),
            closed: AtomicBool::new(false),
        };
        (outbox, rx)
    }

    fn lock(&self) -> MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg`, waiting for room in messages and bytes as `wait` allows.
    pub(super) fn push(&self, msg: Message, wait: Wait) -> Result<(), Refused> {
        let len = payload_len(&msg);
        let mut used = self.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Refused::Closed(msg));
            }
            let bytes_fit = used.bytes == 0 || used.bytes + len <= self.cap_bytes;
            if bytes_fit && used.messages < self.cap_messages {
                break;
            }
            used = match wait {
                Wait::No => return Err(Refused::Full(msg)),
                Wait::Forever => self.room.wait(used).unwrap_or_else(|p| p.into_inner()),
                Wait::Until(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Refused::Timeout(msg));
                    }
                    self.room
                        .wait_timeout(used, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        used.bytes += len;
        used.messages += 1;
        drop(used);
        // Unbounded: never waits; the bound is the count above.
        let sent = self.tx.send(msg).map_err(|e| Refused::Closed(e.0));
        if sent.is_err() {
            self.release(len);
        }
        sent
    }

    /// The I/O thread took a message of `len` payload bytes out.
    pub(super) fn release(&self, len: usize) {
        let mut used = self.lock();
        used.bytes -= len.min(used.bytes);
        used.messages = used.messages.saturating_sub(1);
        drop(used);
        self.room.notify_all();
    }

    /// No more messages will be taken: waiting senders get `Closed`.
    pub(super) fn close(&self) {
        let _guard = self.lock();
        self.closed.store(true, Ordering::Release);
        self.room.notify_all();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.tx.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// What the outbox holds now, against its bounds.
#[derive(Debug, Default)]
struct Used {
    messages: usize,
    bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_in_bytes_with_one_oversized_message_when_empty() {
        let (out, rx) = Outbox::new(100, 10);
        out.push(Message::binary(vec![0u8; 25]), Wait::No).unwrap();
        assert_eq!(out.bytes(), 25, "an empty outbox takes any one message");
        let refused = out.push(Message::binary(vec![0u8; 1]), Wait::No);
        assert!(matches!(refused, Err(Refused::Full(_))));
        let deadline = Instant::now() + Duration::from_millis(20);
        let refused = out.push(Message::binary(vec![0u8; 1]), Wait::Until(deadline));
        assert!(matches!(refused, Err(Refused::Timeout(_))));
        assert!(Instant::now() >= deadline);
        let m = rx.try_recv().unwrap();
        out.release(payload_len(&m));
        out.push(Message::binary(vec![0u8; 10]), Wait::No).unwrap();
        assert_eq!((out.len(), out.bytes()), (1, 10));
    }

    #[test]
    fn a_waiting_sender_gets_room_or_closed() {
        let (out, rx) = Outbox::new(100, 10);
        let out = std::sync::Arc::new(out);
        out.push(Message::binary(vec![0u8; 10]), Wait::No).unwrap();
        let o = out.clone();
        let waiter =
            std::thread::spawn(move || o.push(Message::binary(vec![1u8; 5]), Wait::Forever));
        std::thread::sleep(Duration::from_millis(20));
        let m = rx.try_recv().unwrap();
        out.release(payload_len(&m));
        assert!(waiter.join().unwrap().is_ok());
        let o = out.clone();
        out.push(Message::binary(vec![0u8; 5]), Wait::No).unwrap();
        let waiter =
            std::thread::spawn(move || o.push(Message::binary(vec![1u8; 5]), Wait::Forever));
        std::thread::sleep(Duration::from_millis(20));
        out.close();
        assert!(matches!(waiter.join().unwrap(), Err(Refused::Closed(_))));
    }

    #[test]
    fn bounded_in_messages() {
        let (out, rx) = Outbox::new(2, 1 << 20);
        out.push(Message::text("a"), Wait::No).unwrap();
        out.push(Message::text("b"), Wait::No).unwrap();
        let refused = out.push(Message::text("c"), Wait::No);
        assert!(matches!(refused, Err(Refused::Full(_))));
        let m = rx.try_recv().unwrap();
        out.release(payload_len(&m));
        out.push(Message::text("c"), Wait::No).unwrap();
        assert_eq!(out.len(), 2);
    }
}
