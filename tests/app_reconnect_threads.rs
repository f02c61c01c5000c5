//! 50 reconnect cycles (the server closes every connection right after it opens) leave the process's thread count where it began once the app is closed and joined.

mod app_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use wsapp::{Backoff, Client, WebSocketApp};

const CYCLES: usize = 50;

#[test]
fn reconnect_cycles_do_not_leak_threads() {
    let baseline = thread_count();

    let listener = listen_reusable();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0usize;
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline && served < 4 * CYCLES {
            let Some(tcp) = accept_tcp(&listener, Duration::from_millis(100)) else {
                continue;
            };
            let Ok(mut ws) = tungstenite::accept(tcp) else {
                continue;
            };
            served += 1;
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "restart".into(),
            }));
            drain_until_closed(&mut ws, Duration::from_secs(2));
        }
        served
    });

    let opens = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (o1, o2, p1, p2, errs) = (
        opens.clone(),
        opens.clone(),
        peak.clone(),
        peak.clone(),
        errors.clone(),
    );
    let handle = WebSocketApp::new(
        Client::new(url(addr))
            .connect_timeout(Duration::from_secs(2))
            .handshake_timeout(Duration::from_secs(2))
            .close_timeout(Duration::from_secs(1)),
    )
    .reconnect(Backoff::exponential(
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
    .on_open(move |_| {
        o1.fetch_add(1, Ordering::SeqCst);
        p1.fetch_max(thread_count(), Ordering::SeqCst);
    })
    .on_reconnect(move |_| {
        o2.fetch_add(1, Ordering::SeqCst);
        p2.fetch_max(thread_count(), Ordering::SeqCst);
    })
    .on_error(move |_, e| errs.lock().unwrap().push(e.to_string()))
    .start()
    .expect("start");

    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || opens.load(Ordering::SeqCst)
            > CYCLES),
        "only {} connections opened in 20 s",
        opens.load(Ordering::SeqCst)
    );
    let cycles_took = started.elapsed();
    handle.close(1000, "done").unwrap();
    let (result, _) = join_bounded(handle, Duration::from_secs(5));
    assert!(result.is_ok(), "{result:?}");
    stop.store(true, Ordering::SeqCst);
    let served = join_thread(server, Duration::from_secs(10));

    let mut now = thread_count();
    let settled = wait_until(Duration::from_secs(5), || {
        now = thread_count();
        now <= baseline
    });
    let peak = peak.load(Ordering::SeqCst);
    eprintln!(
        "{} opens ({served} served) in {cycles_took:?}; threads: baseline {baseline}, peak {peak}, end {now}; errors {:?}",
        opens.load(Ordering::SeqCst),
        errors.lock().unwrap()
    );
    assert!(
        settled,
        "threads did not return to {baseline}: {now} after close and join"
    );
    // While running: this thread's server, the dispatcher and one I/O thread (plus slack),
    // never one per cycle.
    assert!(
        peak <= baseline + 4,
        "thread count peaked at {peak} (baseline {baseline})"
    );
}
