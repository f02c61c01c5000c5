//! `workers(n, key, f)`: messages with the same key stay in wire order while
//! different keys run in parallel, every message is handled before `on_close`,
//! a worker's panic reaches `on_error`, and the worker threads are joined.

mod app_common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsapp::{Client, ErrorKind, Message, WebSocketApp};

const TOTAL: u64 = 4_000;
const KEYS: u64 = 4;

fn key_of(m: &Message) -> u64 {
    let t = m.to_text().expect("text");
    t.split_once(':').expect("key:seq").0.parse().expect("key")
}

fn seq_of(m: &Message) -> u64 {
    let t = m.to_text().expect("text");
    t.split_once(':').expect("key:seq").1.parse().expect("seq")
}

/// Sends TOTAL messages "key:seq" with key = seq % KEYS, then closes 1000.
fn serve(listener: TcpListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut ws = app_common::accept_ws(&listener, Duration::from_secs(10));
        for seq in 0..TOTAL {
            ws.send(Message::text(format!("{}:{seq}", seq % KEYS)))
                .expect("send");
        }
        let _ = ws.close(None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && ws.read().is_ok() {}
    })
}

#[test]
fn per_key_order_with_parallel_keys() {
    let threads_before = app_common::thread_count();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = app_common::url(listener.local_addr().unwrap());
    let server = serve(listener);

    let seen: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let (active, max_active) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handled_at_close = Arc::new(AtomicUsize::new(usize::MAX));
    let names: Arc<Mutex<Vec<String>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();

    let (s2, a2, m2, n2) = (
        seen.clone(),
        active.clone(),
        max_active.clone(),
        names.clone(),
    );
    let (s3, h3, e3) = (seen.clone(), handled_at_close.clone(), errors.clone());
    let app = WebSocketApp::new(Client::new(url).queue(256))
        .on_close(move |_ws, _frame| {
            let n = s3.lock().unwrap().values().map(Vec::len).sum();
            h3.store(n, SeqCst);
        })
        .on_error(move |_ws, e| e3.lock().unwrap().push(e.to_string()))
        .workers(KEYS as usize, key_of, move |_ws, msg| {
            let now = a2.fetch_add(1, SeqCst) + 1;
            m2.fetch_max(now, SeqCst);
            let name = thread::current().name().unwrap_or("").to_string();
            // A little work, so that keys overlap in time.
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(50) {
                std::hint::spin_loop();
            }
            s2.lock()
                .unwrap()
                .entry(key_of(&msg))
                .or_default()
                .push(seq_of(&msg));
            let mut names = n2.lock().unwrap();
            if !names.contains(&name) {
                names.push(name);
            }
            a2.fetch_sub(1, SeqCst);
        });
    let (result, took) = app_common::run_bounded(app, Duration::from_secs(30));
    server.join().unwrap();

    let err = result.expect_err("the server closed and reconnect is off");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );

    let seen = seen.lock().unwrap();
    let total: usize = seen.values().map(Vec::len).sum();
    assert_eq!(total as u64, TOTAL, "every message handled");
    assert_eq!(
        handled_at_close.load(SeqCst),
        TOTAL as usize,
        "on_close comes after the workers finished"
    );
    for (key, seqs) in seen.iter() {
        let expected: Vec<u64> = (0..TOTAL).filter(|s| s % KEYS == *key).collect();
        assert_eq!(seqs, &expected, "key {key} out of order or incomplete");
    }
    let names = names.lock().unwrap();
    assert_eq!(names.len(), KEYS as usize, "one worker per key: {names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("wsapp-work-")),
        "{names:?}"
    );
    assert!(
        max_active.load(SeqCst) >= 2,
        "different keys never ran at the same time"
    );
    assert!(
        app_common::wait_until(Duration::from_secs(5), || app_common::thread_count()
            <= threads_before),
        "worker threads left behind: {} > {threads_before}",
        app_common::thread_count()
    );
}

#[test]
fn a_panicking_worker_reaches_on_error_and_the_rest_go_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = app_common::url(listener.local_addr().unwrap());
    let server = serve(listener);
    let handled = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<Vec<wsapp::Error>>> = Arc::default();
    let (h2, e2) = (handled.clone(), errors.clone());
    let app = WebSocketApp::new(Client::new(url))
        .on_error(move |_ws, e| {
            if e.kind() == ErrorKind::Handler {
                e2.lock().unwrap().push(wsapp::Error::Handler {
                    callback: "copy",
                    message: e.to_string(),
                });
            }
        })
        .workers(2, key_of, move |_ws, msg| {
            if seq_of(&msg) == 7 {
                panic!("worker boom at 7");
            }
            h2.fetch_add(1, SeqCst);
        });
    let (result, _) = app_common::run_bounded(app, Duration::from_secs(30));
    server.join().unwrap();
    assert!(result.is_err());
    assert_eq!(handled.load(SeqCst) as u64, TOTAL - 1);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(
        text.contains("worker boom at 7") && text.contains("on_message"),
        "{text}"
    );
}
