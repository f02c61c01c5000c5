//! `recv_buffer_size` sets SO_RCVBUF before connect, and `Stats` reports what
//! the kernel took (on Linux: twice the request, capped at `net.core.rmem_max`).
mod common;

use wsapp::Client;

fn rmem_max() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn effective_recv_buffer_is_what_the_kernel_grants() {
    let server = common::echo_server();
    let max = rmem_max();
    println!("net.core.rmem_max = {max:?}");

    // The default: whatever the system gives, but reported.
    let ws = wsapp::connect(&server.url()).unwrap();
    let default = ws.stats().recv_buffer_size;
    println!("default SO_RCVBUF -> {default:?}");
    assert!(default.is_some_and(|n| n > 0), "{default:?}");
    drop(ws);

    for asked in [64usize << 10, 1 << 20, 4 << 20, 16 << 20] {
        let ws = Client::new(server.url())
            .recv_buffer_size(asked)
            .connect()
            .unwrap();
        let got = ws.stats().recv_buffer_size.expect("rcvbuf is reported");
        println!("asked {asked} -> effective {got}");
        if cfg!(target_os = "linux") {
            if let Some(max) = max {
                // setsockopt(SO_RCVBUF): min(asked, rmem_max), doubled for bookkeeping.
                let expected = 2 * asked.min(max);
                assert_eq!(got, expected, "asked {asked}, rmem_max {max}");
            }
        }
        let capped = max.is_some_and(|m| asked > m);
        assert!(
            got >= asked || capped,
            "asked {asked}, got {got}, rmem_max {max:?}"
        );
        // A connection with a set buffer still works.
        ws.send_text("x").unwrap();
        assert!(ws
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
            .is_some());
    }
}
