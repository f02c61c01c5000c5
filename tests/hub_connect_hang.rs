//! A connect that hangs (a server that accepts TCP and never answers the
//! upgrade) runs on its caller's thread: it delays neither the established
//! connections on the hub nor other connects.
mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use wsapp::{Client, Hub};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_hanging_connect_does_not_delay_the_others() {
    let hub = Hub::with_io_threads(1).unwrap();
    let echo = common::echo_server();
    // The kernel completes the TCP handshake from the backlog; nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ws://{}/", silent.local_addr().unwrap());
    let live = Client::new(echo.url()).hub(&hub).connect().unwrap();

    let hanging: Vec<_> = (0..4)
        .map(|_| {
            let client = Client::new(silent_url.clone())
                .hub(&hub)
                .handshake_timeout(Duration::from_secs(2));
            std::thread::spawn(move || client.connect().map(|_| ()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));

    // Meanwhile: round trips on the established one, and a new connect.
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_millis(1500);
    let mut n = 0;
    while Instant::now() < until && n < 10_000 {
        let t = Instant::now();
        live.send_text("ping").unwrap();
        live.recv_timeout(WAIT).unwrap().expect("echo");
        worst = worst.max(t.elapsed());
        n += 1;
    }
    assert!(
        worst < Duration::from_millis(100),
        "worst round trip {worst:?} over {n}"
    );
    let t = Instant::now();
    let other = Client::new(echo.url()).hub(&hub).connect().unwrap();
    other.send_text("x").unwrap();
    assert!(other.recv_timeout(WAIT).unwrap().is_some());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a connect took {:?}",
        t.elapsed()
    );

    for h in hanging {
        let e = h.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), wsapp::ErrorKind::Timeout, "{e}");
    }
    assert_eq!(hub.stats().connections, 2);
}
