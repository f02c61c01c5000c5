//! Connections coming and going on a hub: the thread count stays fixed
//! (the hub's threads, no `wsapp-io-*`), and the hub forgets ended ones.
mod common;

use std::time::Duration;

use wsapp::{Client, Hub};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn threads_stay_fixed_while_connections_come_and_go() {
    let hub = Hub::with_io_threads(2).unwrap();
    let echo = common::echo_server();
    let client = Client::new(echo.url()).hub(&hub);
    common::wait_for(WAIT, || {
        (common::thread_names("wsapp-hub").len() == 2).then_some(())
    })
    .expect("the hub's two threads");
    for round in 0..5 {
        let conns: Vec<_> = (0..20).map(|_| client.connect().unwrap()).collect();
        assert_eq!(hub.stats().connections, 20);
        for (i, ws) in conns.iter().enumerate() {
            ws.send_text(format!("{round}/{i}")).unwrap();
        }
        for (i, ws) in conns.iter().enumerate() {
            let m = ws.recv_timeout(WAIT).unwrap().expect("echo");
            assert_eq!(m.to_text().unwrap(), format!("{round}/{i}"));
        }
        assert_eq!(common::thread_names("wsapp-hub").len(), 2, "round {round}");
        assert!(
            common::thread_names("wsapp-io").is_empty(),
            "no thread per connection"
        );
        // Half closed explicitly, half dropped.
        for (i, ws) in conns.into_iter().enumerate() {
            if i % 2 == 0 {
                ws.close(1000, "").unwrap();
            }
        }
        common::wait_for(WAIT, || (hub.stats().connections == 0).then_some(()))
            .expect("ended connections leave the hub");
    }
    assert_eq!(common::thread_names("wsapp-hub").len(), 2);
}
