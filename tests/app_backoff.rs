//! Backoff: `delay(n)` stays within `[0, ceiling(n)]` and is spread over that range (full jitter); ceilings start at min, double, then cap at max.

use std::time::Duration;

use wsapp::Backoff;

const SAMPLES: usize = 2000;

#[test]
fn ceilings_grow_then_cap() {
    let min = Duration::from_millis(50);
    let max = Duration::from_millis(500);
    let b = Backoff::exponential(min, max);
    assert_eq!(b.ceiling(1), min);
    let ceilings: Vec<Duration> = (1..=40).map(|n| b.ceiling(n)).collect();
    // Doubling while under the cap: 50, 100, 200, 400, then 500 for ever.
    assert_eq!(
        &ceilings[..6],
        &[50, 100, 200, 400, 500, 500].map(Duration::from_millis)[..]
    );
    for w in ceilings.windows(2) {
        assert!(w[0] <= w[1], "ceilings must not shrink: {ceilings:?}");
    }
    assert!(ceilings.iter().all(|c| *c <= max), "{ceilings:?}");
    // Huge attempt numbers neither overflow nor panic.
    assert_eq!(b.ceiling(1000), max);
    assert_eq!(b.ceiling(u32::MAX), max);
    // max below min is raised to min.
    let flat = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
    assert_eq!(flat.ceiling(1), Duration::from_secs(2));
    assert_eq!(flat.ceiling(10), Duration::from_secs(2));
}

#[test]
fn delays_stay_within_their_ceiling_and_are_spread() {
    let b = Backoff::exponential(Duration::from_millis(50), Duration::from_millis(500));
    for n in 1..=12u32 {
        let ceiling = b.ceiling(n);
        let samples: Vec<Duration> = (0..SAMPLES).map(|_| b.delay(n)).collect();
        for d in &samples {
            assert!(
                *d <= ceiling,
                "attempt {n}: delay {d:?} above ceiling {ceiling:?}"
            );
        }
        let c = ceiling.as_secs_f64();
        let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / SAMPLES as f64;
        let lo = samples.iter().min().unwrap().as_secs_f64();
        let hi = samples.iter().max().unwrap().as_secs_f64();
        let mut distinct = samples.clone();
        distinct.sort();
        distinct.dedup();
        // Uniform on [0, c]: mean c/2 (sd of the mean ~0.0065 c here), extremes near 0 and c.
        assert!(
            (0.4 * c..=0.6 * c).contains(&mean),
            "attempt {n}: mean delay {mean:.4}s not near half the ceiling {c:.4}s"
        );
        assert!(
            lo < 0.05 * c,
            "attempt {n}: smallest delay {lo:.4}s of ceiling {c:.4}s"
        );
        assert!(
            hi > 0.95 * c,
            "attempt {n}: largest delay {hi:.4}s of ceiling {c:.4}s"
        );
        assert!(
            distinct.len() > SAMPLES / 2,
            "attempt {n}: only {} distinct delays",
            distinct.len()
        );
    }
}

#[test]
fn zero_minimum_means_no_wait() {
    let b = Backoff::exponential(Duration::ZERO, Duration::ZERO);
    for n in 1..=5 {
        assert_eq!(b.ceiling(n), Duration::ZERO);
        assert_eq!(b.delay(n), Duration::ZERO);
    }
}
