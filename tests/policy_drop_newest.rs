//! `Overflow::DropNewest` under a flood of 100,000 numbered messages and a
//! consumer that is slow from the start: the first `CAP` messages are all
//! delivered, what is delivered is in order, and every gap is counted once
//! as `dropped.newest`.
mod policy_common;

use std::time::Duration;

use policy_common::{
    assert_strictly_increasing, check_accounting, report, run, Consumer, Pace, N, SMALL,
};
use wsapp::Overflow;

const CAP: usize = 1000;

#[test]
fn drop_newest_keeps_the_first_and_counts_every_gap() {
    let pace = Pace {
        chunk: 500,
        gap: Duration::from_micros(500),
    };
    let run = run(N, SMALL, pace, Consumer::SLOW, |c| {
        c.queue(CAP).overflow(Overflow::DropNewest)
    });
    report("drop newest", N, &run);
    check_accounting(&run, N, CAP, true);

    let seqs = &run.seqs;
    assert_strictly_increasing(seqs);
    assert!(seqs.len() >= CAP, "{} delivered", seqs.len());
    assert_eq!(
        seqs[..CAP],
        (0..CAP as u64).collect::<Vec<_>>(),
        "the first {CAP} messages fill the inbox and are never dropped"
    );
    let end = &run.end;
    let gaps = N - seqs.len() as u64;
    assert!(
        gaps > 0,
        "the consumer was slow from the start, so some must drop: {end}"
    );
    assert_eq!(end.dropped.newest, gaps, "one drop per gap: {end}");
    assert_eq!(
        end.dropped.total(),
        end.dropped.newest,
        "only `newest` drops: {end}"
    );
    assert_eq!(end.pause_count, 0, "DropNewest never pauses reading: {end}");
}
