//! Echo: starts a tungstenite echo server on 127.0.0.1, connects to it with
//! wsapp, sends a few messages and prints the replies and the stats line.
//!
//! `cargo run --example echo`

use std::net::TcpListener;
use std::thread;

fn main() -> Result<(), wsapp::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
                        break;
                    }
                }
            });
        }
    });

    let ws = wsapp::connect(&format!("ws://{addr}/"))?;
    for i in 0..3 {
        ws.send_text(format!("hello {i}"))?;
        println!("got: {}", ws.recv()?);
    }
    ws.send_binary(vec![1u8, 2, 3])?;
    println!("got: {:?}", ws.recv()?);
    println!("{}", ws.stats());
    ws.close(1000, "bye")?;
    match ws.recv() {
        Err(e) if e.is_closed() => println!("{e}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
