//! A hub dropped with live connections closes each with 1001 (going away),
//! the peers see that code, and the hub's threads are joined.
mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsapp::{Client, Hub};

const WAIT: Duration = Duration::from_secs(10);
const CONNS: usize = 8;

#[test]
fn dropping_the_hub_closes_every_connection_with_1001() {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let tx = tx.lock().unwrap().clone();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    let _ = tx.send(frame.map(|f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let hub = Hub::with_io_threads(2).unwrap();
    let conns: Vec<_> = (0..CONNS)
        .map(|_| Client::new(server.url()).hub(&hub).connect().unwrap())
        .collect();
    common::wait_for(WAIT, || {
        (common::thread_names("wsapp-hub").len() == 2).then_some(())
    })
    .expect("the hub's two threads");
    let t = Instant::now();
    drop(hub);
    assert!(t.elapsed() < WAIT, "the drop took {:?}", t.elapsed());
    assert!(
        common::thread_names("wsapp-hub").is_empty(),
        "threads joined"
    );
    for _ in 0..CONNS {
        let code = rx.recv_timeout(WAIT).expect("the peer sees a close");
        assert_eq!(code, Some(1001));
    }
    for ws in &conns {
        let e = ws.recv_timeout(WAIT).unwrap_err();
        assert!(e.is_closed(), "{e}");
        assert!(ws.send_text("late").is_err());
    }
    // A client whose hub is gone says so.
    let client = {
        let hub = Hub::with_io_threads(1).unwrap();
        Client::new(server.url()).hub(&hub)
    };
    let e = client.connect().unwrap_err();
    assert!(e.to_string().contains("hub"), "{e}");
}
