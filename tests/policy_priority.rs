//! `Overflow::priority` under a flood of 100,000 numbered messages and a slow
//! consumer: every tenth message has top priority and is never dropped; the
//! others (priorities 0..=2) are shed, each drop counted as `dropped.priority`.
mod policy_common;

use std::time::Duration;

use policy_common::{
    assert_strictly_increasing, check_accounting, report, run, seq, Consumer, Pace, N, SMALL,
};
use wsapp::{Message, Overflow};

const CAP: usize = 1000;

fn priority(m: &Message) -> u8 {
    let s = seq(m);
    if s % 10 == 0 {
        Overflow::TOP
    } else {
        (s % 3) as u8
    }
}

#[test]
fn priority_never_drops_top_and_counts_every_gap() {
    let pace = Pace {
        chunk: 500,
        gap: Duration::from_micros(500),
    };
    let run = run(N, SMALL, pace, Consumer::SLOW, |c| {
        c.queue(CAP).overflow(Overflow::priority(priority))
    });
    report("priority", N, &run);
    check_accounting(&run, N, CAP, false);

    let seqs = &run.seqs;
    assert_strictly_increasing(seqs);
    let top: Vec<u64> = seqs.iter().copied().filter(|s| s % 10 == 0).collect();
    let expected: Vec<u64> = (0..N).step_by(10).collect();
    if top != expected {
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|s| top.binary_search(s).is_err())
            .take(10)
            .collect();
        panic!(
            "{} of {} top-priority messages delivered; first missing: {missing:?}",
            top.len(),
            expected.len()
        );
    }
    let end = &run.end;
    let gaps = N - seqs.len() as u64;
    assert!(gaps > 0, "the consumer was slow, so some must drop: {end}");
    assert_eq!(end.dropped.priority, gaps, "one drop per gap: {end}");
    assert_eq!(
        end.dropped.total(),
        end.dropped.priority,
        "only `priority` drops: {end}"
    );
}

/// With a small inbox the queue soon holds only top-priority messages; then a
/// top-priority arrival pauses reading instead of being dropped.
#[test]
fn priority_blocks_rather_than_drop_top() {
    const SMALL_CAP: usize = 100;
    let pace = Pace {
        chunk: 500,
        gap: Duration::from_micros(500),
    };
    let run = run(N, SMALL, pace, Consumer::SLOW, |c| {
        c.queue(SMALL_CAP).overflow(Overflow::priority(priority))
    });
    report("priority, queue 100", N, &run);
    check_accounting(&run, N, SMALL_CAP, false);

    let seqs = &run.seqs;
    assert_strictly_increasing(seqs);
    let top = seqs.iter().filter(|s| *s % 10 == 0).count() as u64;
    assert_eq!(top, N / 10, "every top-priority message is delivered");
    let end = &run.end;
    assert!(
        end.pause_count > 0,
        "a queue full of top priority must pause reading: {end}"
    );
    assert_eq!(end.dropped.priority, N - seqs.len() as u64, "{end}");
    assert_eq!(end.dropped.total(), end.dropped.priority, "{end}");
}

fn scripted_priority(m: &Message) -> u8 {
    match seq(m) {
        0 => 0,
        1 => 2,
        2 => 1,
        _ => Overflow::TOP,
    }
}

/// Byte bound 100. Queued: #0 (10 B, priority 0) and #1 (80 B, priority 2).
/// #2 (50 B, priority 1) arrives: evicting #0 cannot make room (80 + 50 > 100)
/// and nothing else is below priority 1, so #2 is dropped. #0 must survive:
/// evicting it bought nothing.
#[test]
fn priority_does_not_evict_when_that_cannot_make_room() {
    let run = policy_common::scripted(
        vec![10, 80, 50],
        |s| s.received == 3,
        |c| {
            c.queue(100)
                .queue_bytes(100)
                .overflow(Overflow::priority(scripted_priority))
        },
    );
    let end = &run.end;
    assert_eq!(
        (run.seqs.as_slice(), end.dropped.priority),
        (&[0, 1][..], 1),
        "only the message that did not fit may be dropped; before recv: {}; end: {end}",
        run.before
    );
}

/// Byte bound 100. Queued: #0 (30 B, priority 0) and #1 (60 B, top).
/// #2 (50 B, top) arrives: even without #0 it does not fit (60 + 50 > 100), so
/// reading pauses until the consumer makes room, and then #0 and #2 both fit.
/// Evicting #0 first loses it for nothing.
#[test]
fn priority_does_not_evict_for_a_top_message_that_waits_anyway() {
    fn prio(m: &Message) -> u8 {
        if seq(m) == 0 {
            0
        } else {
            Overflow::TOP
        }
    }
    let run = policy_common::scripted(
        vec![30, 60, 50],
        |s| s.paused || s.received == 3,
        |c| {
            c.queue(100)
                .queue_bytes(100)
                .overflow(Overflow::priority(prio))
        },
    );
    let end = &run.end;
    assert_eq!(
        (run.seqs.as_slice(), end.dropped.priority),
        (&[0, 1, 2][..], 0),
        "the top-priority message waited, so nothing had to be dropped; \
         before recv: {}; end: {end}",
        run.before
    );
}
