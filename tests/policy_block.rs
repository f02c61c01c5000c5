//! `Overflow::Block` (the default) under a flood of 100,000 numbered messages
//! and a slow consumer: reading pauses instead of dropping, so every message
//! arrives, in order, and the accounting identity holds in every snapshot.
mod policy_common;

use policy_common::{check_accounting, report, run, Consumer, Pace, N, SMALL};

const CAP: usize = 1000;

#[test]
fn block_delivers_everything_in_order() {
    let run = run(N, SMALL, Pace::FLAT_OUT, Consumer::SLOW, |c| c.queue(CAP));
    report("block", N, &run);
    check_accounting(&run, N, CAP, false);

    assert_eq!(run.seqs.len() as u64, N, "all delivered");
    if let Some((i, &s)) = run.seqs.iter().enumerate().find(|&(i, &s)| s != i as u64) {
        panic!("message {i} is seq {s}: lost or reordered");
    }
    let end = &run.end;
    assert_eq!(end.dropped.total(), 0, "{end}");
    assert_eq!(end.delivered, N);
    assert!(
        end.pause_count > 0,
        "the consumer was slow, so reading must have paused: {end}"
    );
    assert!(
        end.queue_high_water <= CAP + policy_common::END_BATCH_SLACK,
        "{end}"
    );
    assert!(
        run.snapshots.iter().all(|s| s.dropped.total() == 0),
        "Block never drops"
    );
}
