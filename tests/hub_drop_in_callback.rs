//! A hub dropped from inside one of its own callbacks (the last handle
//! taken out of shared state by a handler, as an app that shuts everything
//! down on a command would): the drop must not wait on the very thread it
//! runs on. Every connection still gets its 1001, the drop returns, and the
//! hub's threads end.
mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsapp::{Client, Hub, WebSocketApp};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn dropping_the_hub_in_its_own_callback_returns_and_closes_with_1001() {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let server = common::serve(move |tcp| {
        let Ok(mut ws) = tungstenite::accept(tcp) else {
            return;
        };
        let _ = ws.send(tungstenite::Message::text("shut down"));
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
    let hub = Arc::new(Mutex::new(Some(Hub::with_io_threads(1).unwrap())));
    let other = {
        let guard = hub.lock().unwrap();
        Client::new(server.url())
            .hub(guard.as_ref().unwrap())
            .connect()
            .unwrap()
    };
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let slot = Arc::clone(&hub);
    let client = Client::new(server.url()).hub(hub.lock().unwrap().as_ref().unwrap());
    let app = WebSocketApp::new(client)
        .on_message(move |_ws, _msg| {
            let taken = slot.lock().unwrap().take();
            let t = Instant::now();
            drop(taken);
            let _ = dropped_tx.send(t.elapsed());
        })
        .start()
        .unwrap();
    let took = dropped_rx
        .recv_timeout(WAIT * 2)
        .expect("the drop inside the callback returned");
    assert!(took < WAIT, "the drop took {took:?}");
    for _ in 0..2 {
        let code = rx.recv_timeout(WAIT).expect("each peer sees a close");
        assert_eq!(code, Some(1001));
    }
    // Its "shut down" first, then the end.
    let first = other.recv_timeout(WAIT).expect("the server's text");
    assert!(first.is_some());
    let e = other.recv_timeout(WAIT).unwrap_err();
    assert!(e.is_closed(), "{e}");
    let _ = app.join();
    let gone = common::wait_for(WAIT, || {
        (common::thread_names("wsapp-hub").is_empty()
            && common::thread_names("wsapp-disp").is_empty())
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "hub threads left: {:?} {:?}",
        common::thread_names("wsapp-hub"),
        common::thread_names("wsapp-disp")
    );
}
