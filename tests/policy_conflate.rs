//! `Overflow::conflate` under a flood of 100,000 numbered messages keyed by
//! `seq % 32` and a slow consumer: the latest value of every key arrives,
//! values of one key arrive in order, and each replaced value is counted once
//! as `dropped.conflated`.
mod policy_common;

use std::collections::HashMap;
use std::time::Duration;

use policy_common::{
    assert_high_water_covers_queued, check_accounting, report, run, seq, Consumer, Pace, N, SMALL,
};
use wsapp::{Message, Overflow};

const CAP: usize = 1000;
const KEYS: u64 = 32;

fn key(m: &Message) -> Option<String> {
    Some((seq(m) % KEYS).to_string())
}

fn conflate_run() -> policy_common::Run {
    let pace = Pace {
        chunk: 500,
        gap: Duration::from_micros(500),
    };
    run(N, SMALL, pace, Consumer::SLOW, |c| {
        c.queue(CAP).overflow(Overflow::conflate(key))
    })
}

#[test]
fn conflate_keeps_the_latest_per_key() {
    let run = conflate_run();
    report("conflate", N, &run);
    check_accounting(&run, N, CAP, false);

    let seqs = &run.seqs;
    let mut last: HashMap<u64, u64> = HashMap::new();
    for &s in seqs {
        if let Some(prev) = last.insert(s % KEYS, s) {
            assert!(prev < s, "key {}: {s} delivered after {prev}", s % KEYS);
        }
    }
    for s in N - KEYS..N {
        assert_eq!(
            last.get(&(s % KEYS)),
            Some(&s),
            "the latest value of key {} ({s}) must be delivered last for its key",
            s % KEYS
        );
    }
    let end = &run.end;
    let gaps = N - seqs.len() as u64;
    assert!(
        gaps > 0,
        "the consumer was slow, so some must be replaced: {end}"
    );
    assert_eq!(
        end.dropped.conflated, gaps,
        "one replacement per gap: {end}"
    );
    assert_eq!(
        end.dropped.total(),
        end.dropped.conflated,
        "only `conflated` drops: {end}"
    );
    assert_eq!(
        end.pause_count, 0,
        "32 keys never fill a {CAP}-message inbox: {end}"
    );
}

/// The shared queue holds at most one message per key (32), and the consumer
/// prefetches up to 32 more: the inbox holds up to 64, and `queued` says so,
/// but `queue_high_water` only ever counts the shared part.
#[test]
fn conflate_high_water_counts_prefetched_messages() {
    let run = conflate_run();
    report("conflate (high water)", N, &run);
    assert_high_water_covers_queued(&run);
}

/// Byte bound 1 KiB, three keys (`seq % 3`). #0..#2 (16 B each) are queued;
/// #3..#5 (1000 B each) replace them in place. The inbox must not end up
/// holding three times its byte bound.
#[test]
fn conflate_replacement_respects_queue_bytes() {
    const BOUND: usize = 1024;
    fn key3(m: &Message) -> Option<String> {
        Some((seq(m) % 3).to_string())
    }
    let run = policy_common::scripted(
        vec![16, 16, 16, 1000, 1000, 1000],
        |s| s.received == 6,
        |c| {
            c.queue(100)
                .queue_bytes(BOUND)
                .overflow(Overflow::conflate(key3))
        },
    );
    let s = &run.before;
    assert!(
        s.queued <= 1 || s.queued_bytes <= BOUND,
        "{} bytes in {} queued messages, bound {BOUND}: {s}",
        s.queued_bytes,
        s.queued
    );
}
