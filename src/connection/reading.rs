//! Who reads the socket: one state, [`Reading`], kept in `Io` under the
//! connection's lock, with every move between its states in this file.
//!
//! | state | who reads | consumers may read | I/O thread polls for reads | keepalive |
//! |---|---|---|---|---|
//! | `IoThread` | the I/O thread, ahead into the inbox | no | yes | runs |
//! | `Shared` | the I/O thread reads ahead; a consumer that finds the inbox empty reads too | yes | yes | runs |
//! | `Consumer` | a consumer (it may be `watching` the socket, or hold `partial` of a message); the I/O thread stands back | yes | no: it looks again every `STAND_BACK` | runs; waits while the consumer takes what is queued |
//! | `HeldBack` | nobody: the inbox has no room for the batch the I/O thread holds | no | no | suspended |
//! | `HandOff` | nobody, until the I/O thread takes what a consumer read that only it handles (a close frame, an error) | no | yes | runs |
//! | `Ended` | nobody | no | no | off |
//!
//! Moves. The I/O thread settles the state once per turn with [`decide`], a
//! pure function of a [`Snapshot`] (whether it reads, and so polls the
//! socket for reading), and how long it then sleeps with [`sleep_for`].
//! Consumers make four moves of their own, under the same lock: reading a message (`Consumer` stays, no longer
//! watching), finding the socket empty (`Shared`/`Consumer` to `Consumer`,
//! watching), giving up the watch (`Consumer` to `Shared`, parked: the I/O
//! thread is woken and reads for one turn at least), and handing over
//! (`Shared`/`Consumer` to `HandOff`).
//!
//! The I/O thread stands back only for a consumer that took a message since
//! its last turn (or watches the socket) and has at most `STAND_BACK_QUEUE`
//! messages queued: one with more reads nothing from the socket for a while.
//!
//! Timing, and how the constants relate:
//! - `STAND_BACK` (1 ms, here): how often the I/O thread, standing back, checks
//!   that a consumer still takes messages. A consumer that stops for longer
//!   (a slow handler) finds it reading ahead, so a pause costs the wire at
//!   most this long. Far below any sensible ping timeout.
//! - `WATCH` (2 ms, `connection::direct`): how long a consumer that found the
//!   socket empty polls it before it parks on the inbox and hands the watch
//!   back. Longer than `STAND_BACK`, so that a consumer between messages of
//!   a steady stream keeps reading; a watching consumer is "active" whatever
//!   the tick.
//! - `PARTIAL_SPIN` / `PARTIAL_PIECE` (10 µs / 32 KiB, `connection::direct`): a
//!   consumer in the middle of a large message waits awake that long for
//!   that much before it polls. Far below `WATCH`.
//! - A consumer of the plain queue spins for `Client::busy_wait` (zero by
//!   default) before it parks; the reader wakes it at the end of a turn,
//!   and in the middle of one once `queue::WAKE_QUEUED` (4096, at most half
//!   the bound) or `queue::WAKE_BYTES` (1 MiB) have been pushed since it
//!   began to wait; a consumer that may read the socket itself (it parks
//!   after `WATCH`) after one batch (`queue::DIRECT_WAKE`, 64), so that it
//!   takes over reading soon. None of this depends on
//!   the constants above (a default 50 µs spin cost a 4 KiB flood a quarter
//!   of its speed on two cores; BENCHMARKS.md).

use std::time::{Duration, Instant};

use crate::Message;

/// While a consumer reads the socket itself, the I/O thread checks this often
/// whether it still does.
pub(super) const STAND_BACK: Duration = Duration::from_millis(1);

/// The most messages queued for which the I/O thread still stands back for a
/// consumer that takes them: about one batch of the I/O thread's (`BATCH`),
/// which a consumer that keeps up takes in microseconds. While it does, the
/// pong deadline waits (the queued data holds the pong back).
pub(super) const STAND_BACK_QUEUE: usize = 64;

/// Who reads the socket now. See the module doc for the table.
#[derive(Debug, Default)]
pub(super) enum Reading {
    #[default]
    IoThread,
    Shared {
        /// A consumer gave up its watch and sleeps on the inbox: the I/O
        /// thread reads at least one turn before it may stand back again.
        parked: bool,
    },
    Consumer {
        /// A consumer polls the socket now.
        watching: bool,
        /// tungstenite holds part of a message a consumer's read took.
        partial: bool,
    },
    HeldBack,
    HandOff(tungstenite::Result<Message>),
    Ended,
}

/// What the I/O thread knows at the start of its read side, for [`decide`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Snapshot {
    /// The policy lets consumers read the socket (`Block` without a filter).
    pub(super) direct: bool,
    /// The I/O thread holds messages the inbox had no room for.
    pub(super) held_back: bool,
    /// A close frame was sent or received: only the I/O thread reads.
    pub(super) closing: bool,
    /// Messages in the inbox (a consumer takes those before it reads).
    pub(super) queued: usize,
    /// Since the last turn a consumer took or read a message.
    pub(super) consumer_took: bool,
}

/// The I/O thread's decision for one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Read ahead; consumers may not read.
    IoThread,
    /// Read ahead; a consumer that finds the inbox empty may read too.
    Shared,
    /// Do not read; look again after `STAND_BACK`.
    StandBack,
    /// Do not read: the inbox is full.
    HeldBack,
}

impl Decision {
    /// Whether the I/O thread reads (and polls the socket for reading) this turn.
    pub(super) fn io_reads(self) -> bool {
        matches!(self, Decision::IoThread | Decision::Shared)
    }
}

/// The I/O thread's read decision: a pure function, unit-tested below.
pub(super) fn decide(s: &Snapshot, now: &Reading) -> Decision {
    if s.held_back {
        return Decision::HeldBack;
    }
    if !s.direct || s.closing || matches!(now, Reading::HandOff(_) | Reading::Ended) {
        return Decision::IoThread;
    }
    let watching = matches!(now, Reading::Consumer { watching: true, .. });
    let parked = matches!(now, Reading::Shared { parked: true });
    // Stand back only for a consumer that reads the socket itself, or soon
    // will: one with more than a batch queued to take reads nothing for a
    // while, and the wire would stop (a pong behind it would not be seen).
    if s.queued <= STAND_BACK_QUEUE && !parked && (watching || s.consumer_took) {
        Decision::StandBack
    } else {
        Decision::Shared
    }
}

/// How long the I/O thread may sleep after a turn: until `next` (its next
/// deadline; `None`: none), not at all when it stopped with data left in
/// buffers the poller cannot see (`more`), and at most `STAND_BACK` while it
/// stands back, to look again whether the consumer still reads.
pub(super) fn sleep_for(
    now: Instant,
    next: Option<Instant>,
    more: bool,
    decision: Decision,
) -> Option<Duration> {
    if more {
        return Some(Duration::ZERO);
    }
    let wait = next.map(|t| t.saturating_duration_since(now));
    if decision == Decision::StandBack {
        return Some(wait.map_or(STAND_BACK, |w| w.min(STAND_BACK)));
    }
    wait
}

impl Reading {
    /// Whether a consumer that finds the inbox empty may read the socket.
    pub(super) fn consumers_may_read(&self) -> bool {
        matches!(self, Reading::Shared { .. } | Reading::Consumer { .. })
    }

    /// Whether the I/O thread polls the socket for reads.
    pub(super) fn io_thread_polls(&self) -> bool {
        matches!(
            self,
            Reading::IoThread | Reading::Shared { .. } | Reading::HandOff(_)
        )
    }

    /// Whether nobody reads because data is held back: the pong deadline waits.
    pub(super) fn keepalive_suspended(&self) -> bool {
        matches!(self, Reading::HeldBack)
    }

    /// A consumer in the middle of a message (its last read took part of one).
    pub(super) fn consumer_partial(&self) -> bool {
        matches!(self, Reading::Consumer { partial: true, .. })
    }

    /// The public summary, for `Stats`.
    pub(super) fn reader(&self) -> crate::stats::Reader {
        use crate::stats::Reader;
        match self {
            Reading::IoThread | Reading::Shared { .. } | Reading::HandOff(_) => Reader::IoThread,
            Reading::Consumer { .. } => Reader::Consumer,
            Reading::HeldBack => Reader::HeldBack,
            Reading::Ended => Reader::Ended,
        }
    }

    // Consumers' moves.

    /// A consumer read a whole message.
    pub(super) fn consumer_read(&mut self) {
        if let Reading::Consumer { watching, partial } = self {
            *watching = false;
            *partial = false;
        }
    }

    /// A consumer found the socket empty; `partial`: its read took part of a message.
    pub(super) fn consumer_found_empty(&mut self, partial: bool) {
        let was = self.consumer_partial();
        *self = Reading::Consumer {
            watching: true,
            partial: was || partial,
        };
    }

    /// A consumer gives up its watch and parks. Returns whether the I/O
    /// thread stood back (and so must be woken to read).
    pub(super) fn consumer_parks(&mut self) -> bool {
        if let Reading::Consumer { .. } = self {
            *self = Reading::Shared { parked: true };
            return true;
        }
        false
    }

    /// A consumer read what only the I/O thread handles.
    pub(super) fn hand_off(&mut self, read: tungstenite::Result<Message>) {
        *self = Reading::HandOff(read);
    }

    // The I/O thread's moves.

    /// Whether a consumer handed something over that the I/O thread has not taken.
    pub(super) fn has_hand_off(&self) -> bool {
        matches!(self, Reading::HandOff(_))
    }

    /// Takes what a consumer handed over, if anything.
    pub(super) fn take_hand_off(&mut self) -> Option<tungstenite::Result<Message>> {
        match std::mem::take(self) {
            Reading::HandOff(read) => Some(read),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Applies the turn's decision. A consumer's sub-state survives a turn
    /// that keeps it reading; any other decision makes what it left of a
    /// message the I/O thread's to finish.
    pub(super) fn settle(&mut self, decision: Decision) {
        if matches!(self, Reading::HandOff(_) | Reading::Ended) {
            return;
        }
        *self = match (decision, std::mem::take(self)) {
            (Decision::StandBack, c @ Reading::Consumer { .. }) => c,
            (Decision::StandBack, _) => Reading::Consumer {
                watching: false,
                partial: false,
            },
            (Decision::Shared, _) => Reading::Shared { parked: false },
            (Decision::IoThread, _) => Reading::IoThread,
            (Decision::HeldBack, _) => Reading::HeldBack,
        };
    }

    /// The connection has ended: nobody reads past it.
    pub(super) fn end(&mut self) {
        *self = Reading::Ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            direct: true,
            ..Snapshot::default()
        }
    }

    #[test]
    fn stands_back_only_for_a_consumer_that_reads_the_socket() {
        let took = Snapshot {
            consumer_took: true,
            ..snap()
        };
        assert_eq!(decide(&took, &Reading::IoThread), Decision::StandBack);
        let watching = Reading::Consumer {
            watching: true,
            partial: false,
        };
        assert_eq!(decide(&snap(), &watching), Decision::StandBack);
        // Nothing taken, nobody watching: a consumer away in a handler.
        let away = Reading::Consumer {
            watching: false,
            partial: false,
        };
        assert_eq!(decide(&snap(), &away), Decision::Shared);
    }

    #[test]
    fn a_consumer_draining_the_inbox_does_not_stop_the_wire() {
        // The false pong timeout after a pause: the consumer takes from a
        // full inbox, so it reads nothing from the socket; the I/O thread must.
        let draining = Snapshot {
            consumer_took: true,
            queued: STAND_BACK_QUEUE + 1,
            ..snap()
        };
        assert_eq!(decide(&draining, &Reading::IoThread), Decision::Shared);
        let watching = Reading::Consumer {
            watching: true,
            partial: true,
        };
        assert_eq!(decide(&draining, &watching), Decision::Shared);
    }

    #[test]
    fn how_long_the_io_thread_sleeps() {
        let now = Instant::now();
        let soon = Some(now + Duration::from_millis(300));
        let ms = Duration::from_millis;
        assert_eq!(sleep_for(now, soon, false, Decision::Shared), Some(ms(300)));
        assert_eq!(
            sleep_for(now, None, false, Decision::Shared),
            None,
            "no timer: until woken"
        );
        assert_eq!(
            sleep_for(now, soon, true, Decision::Shared),
            Some(Duration::ZERO)
        );
        assert_eq!(
            sleep_for(now, soon, false, Decision::StandBack),
            Some(STAND_BACK)
        );
        assert_eq!(
            sleep_for(now, None, false, Decision::StandBack),
            Some(STAND_BACK)
        );
        let past = Some(now - ms(5));
        assert_eq!(
            sleep_for(now, past, false, Decision::HeldBack),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_consumer_with_a_batch_left_is_stood_back_for() {
        let nearly_dry = Snapshot {
            consumer_took: true,
            queued: STAND_BACK_QUEUE,
            ..snap()
        };
        assert_eq!(decide(&nearly_dry, &Reading::IoThread), Decision::StandBack);
    }

    #[test]
    fn held_back_close_hand_off_and_lossy_policies() {
        let held = Snapshot {
            held_back: true,
            consumer_took: true,
            ..snap()
        };
        assert_eq!(decide(&held, &Reading::IoThread), Decision::HeldBack);
        let closing = Snapshot {
            closing: true,
            consumer_took: true,
            ..snap()
        };
        assert_eq!(decide(&closing, &Reading::IoThread), Decision::IoThread);
        let lossy = Snapshot {
            direct: false,
            consumer_took: true,
            ..snap()
        };
        assert_eq!(decide(&lossy, &Reading::IoThread), Decision::IoThread);
        let took = Snapshot {
            consumer_took: true,
            ..snap()
        };
        let handoff = Reading::HandOff(Err(tungstenite::Error::ConnectionClosed));
        assert_eq!(decide(&took, &handoff), Decision::IoThread);
    }

    #[test]
    fn a_parked_consumer_gets_one_reading_turn() {
        let took = Snapshot {
            consumer_took: true,
            ..snap()
        };
        let mut r = Reading::Consumer {
            watching: true,
            partial: false,
        };
        assert!(r.consumer_parks());
        assert_eq!(decide(&took, &r), Decision::Shared);
        r.settle(Decision::Shared);
        assert_eq!(decide(&took, &r), Decision::StandBack);
        assert!(!Reading::IoThread.consumer_parks(), "nothing to wake");
    }

    #[test]
    fn settle_keeps_the_consumer_sub_state_only_while_it_reads() {
        let mut r = Reading::Shared { parked: false };
        r.consumer_found_empty(true);
        assert!(r.consumer_partial() && r.consumers_may_read());
        r.settle(Decision::StandBack);
        assert!(r.consumer_partial());
        r.settle(Decision::Shared);
        assert!(!r.consumer_partial());
        r.settle(Decision::HeldBack);
        assert!(r.keepalive_suspended() && !r.consumers_may_read());
        r.hand_off(Err(tungstenite::Error::ConnectionClosed));
        r.settle(Decision::StandBack);
        assert!(
            r.take_hand_off().is_some(),
            "a hand-off waits for the I/O thread"
        );
        r.end();
        r.settle(Decision::Shared);
        assert!(matches!(r, Reading::Ended));
    }
}
