//! `Overflow::DropOldest` under a flood of 100,000 numbered messages and a slow
//! consumer: what is delivered is in order, every gap is counted once as
//! `dropped.oldest`, and the last message always arrives.
mod policy_common;

use std::time::Duration;

use policy_common::{
    assert_strictly_increasing, check_accounting, report, run, Consumer, Pace, N, SMALL,
};
use wsapp::Overflow;

const CAP: usize = 1000;

#[test]
fn drop_oldest_keeps_the_latest_and_counts_every_gap() {
    let pace = Pace {
        chunk: 500,
        gap: Duration::from_micros(500),
    };
    let run = run(N, SMALL, pace, Consumer::SLOW, |c| {
        c.queue(CAP).overflow(Overflow::DropOldest)
    });
    report("drop oldest", N, &run);
    check_accounting(&run, N, CAP, true);

    let seqs = &run.seqs;
    assert_strictly_increasing(seqs);
    assert_eq!(
        seqs.last(),
        Some(&(N - 1)),
        "the last message is never dropped"
    );
    let end = &run.end;
    let gaps = N - seqs.len() as u64;
    assert!(gaps > 0, "the consumer was slow, so some must drop: {end}");
    assert_eq!(end.dropped.oldest, gaps, "one drop per gap: {end}");
    assert_eq!(
        end.dropped.total(),
        end.dropped.oldest,
        "only `oldest` drops: {end}"
    );
    assert_eq!(end.pause_count, 0, "DropOldest never pauses reading: {end}");
}
