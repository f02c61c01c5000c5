//! `Client::filter` under a flood of 100,000 numbered messages and a slow
//! consumer (default `Block` policy): only even sequence numbers arrive, all of
//! them and in order; the odd ones are counted as `dropped.filtered`.
mod policy_common;

use policy_common::{check_accounting, report, run, seq, Consumer, Pace, N, SMALL};

const CAP: usize = 1000;

#[test]
fn filter_keeps_only_even_and_counts_the_rest() {
    let run = run(N, SMALL, Pace::FLAT_OUT, Consumer::SLOW, |c| {
        c.queue(CAP).filter(|m| seq(m) % 2 == 0)
    });
    report("filter", N, &run);
    check_accounting(&run, N, CAP, false);

    let expected: Vec<u64> = (0..N).step_by(2).collect();
    if run.seqs != expected {
        let at = run
            .seqs
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(run.seqs.len().min(expected.len()));
        panic!(
            "{} delivered, expected {}; first difference at index {at}: {:?} vs {:?}",
            run.seqs.len(),
            expected.len(),
            run.seqs.get(at),
            expected.get(at)
        );
    }
    let end = &run.end;
    assert_eq!(end.dropped.filtered, N / 2, "{end}");
    assert_eq!(end.dropped.total(), N / 2, "only `filtered` drops: {end}");
    assert_eq!(end.delivered, N / 2, "{end}");
}
