//! Unit tests of the frame follower: close codes and reasons, every chunking
//! of the frames a server sends, refused headers, and a property test of the
//! output against the input up to the close.

use super::close::close_code_allowed;
use super::*;
use crate::CloseFrame;
use proptest::prelude::*;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn wire_close_codes_over_the_whole_u16_range() {
    let ranges = [(1000, 1003), (1007, 1014), (3000, 4999)];
    for code in 0..=u16::MAX {
        let expected = ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&code));
        assert_eq!(close_code_allowed(code), expected, "{code}");
        assert_eq!(check_close(code, "").is_ok(), expected, "{code}");
        // What tungstenite is shown: accepted exactly when the RFC allows
        // the code, and rewritten only in its low byte.
        let shown = shown_code(code);
        assert_eq!(CloseCode::from(shown).is_allowed(), expected, "{code}");
        assert_eq!(shown >> 8, code >> 8, "{code}");
    }
    for code in [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert!(!close_code_allowed(code), "{code}");
    }
    for code in [1000, 1003, 1007, 1014, 3000, 4999] {
        assert!(close_code_allowed(code), "{code}");
    }
}

#[test]
fn wire_close_reason_length() {
    assert!(check_close(1000, &"x".repeat(123)).is_ok());
    let err = check_close(1000, &"x".repeat(124)).unwrap_err();
    assert!(err.to_string().contains("124 bytes"), "{err}");
    // Counted in bytes of UTF-8, not characters.
    assert!(check_close(1000, &"é".repeat(61)).is_ok());
    assert!(check_close(1000, &"é".repeat(62)).is_err());
    let err = check_close(1005, "").unwrap_err();
    assert!(err.to_string().contains("1005"), "{err}");
}

// Frames as a server sends them.
fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        v.push(m | len as u8);
    } else if len < 65536 {
        v.push(m | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    frame(0x88, None, &p)
}

/// Feeds `wire` to a fresh follower in chunks of the given sizes (cycled);
/// returns what it handed up, the error that stopped it, and the follower.
fn feed(wire: &[u8], chunks: &[usize]) -> (Vec<u8>, Option<io::Error>, Inbound) {
    let mut f = Inbound::default();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().copied().filter(|&c| c > 0).cycle();
    while at < wire.len() {
        if let Err(e) = f.check() {
            return (out, Some(e), f);
        }
        let n = sizes.next().unwrap_or(wire.len()).min(wire.len() - at);
        let mut buf = wire[at..at + n].to_vec();
        at += n;
        match f.filter(&mut buf) {
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return (out, Some(e), f),
        }
    }
    (out, f.check().err(), f)
}

/// Every chunking of small inputs: one byte, two, three, ..., the whole.
fn all_splits(wire: &[u8], mut check: impl FnMut(&str, Vec<u8>, Option<io::Error>, Inbound)) {
    for size in 1..=wire.len().max(1) {
        let (out, err, f) = feed(wire, &[size]);
        check(&format!("chunks of {size}"), out, err, f);
    }
}

#[test]
fn wire_data_frames_pass_unchanged_whatever_the_splits() {
    let mut wire = frame(0x81, None, b"hello");
    wire.extend(frame(0x82, None, &[7u8; 300])); // 2-byte length
    wire.extend(frame(0x82, None, &[8u8; 70_000])); // 8-byte length
    wire.extend(frame(0x89, None, b"ping"));
    wire.extend(frame(0x01, None, b"frag"));
    wire.extend(frame(0x80, None, b"ment"));
    for size in [1, 2, 3, 5, 7, 13, 64, 4096, wire.len()] {
        let (out, err, f) = feed(&wire, &[size]);
        assert!(err.is_none(), "{size}: {err:?}");
        assert!(out == wire, "chunks of {size}: output differs");
        assert!(f.peer_close().is_none());
    }
}

#[test]
fn wire_close_ends_the_stream_and_is_recorded() {
    let mut wire = frame(0x81, None, b"before");
    wire.extend(close(1001, b"going away"));
    let end = wire.len();
    wire.extend(frame(0x81, None, b"after the close"));
    wire.extend(close(1000, b"twice"));
    all_splits(&wire, |how, out, err, f| {
        assert!(err.is_none(), "{how}: {err:?}");
        assert_eq!(out, wire[..end], "{how}");
        let rec = f.peer_close().expect(how);
        assert_eq!(rec.code(), Some(1001), "{how}");
        assert_eq!(rec.reason(), b"going away", "{how}");
    });
}

#[test]
fn wire_close_without_payload() {
    let mut wire = frame(0x88, None, b"");
    wire.extend(frame(0x81, None, b"late"));
    all_splits(&wire, |how, out, err, f| {
        assert!(err.is_none(), "{how}");
        assert_eq!(out, [0x88, 0], "{how}");
        assert_eq!(f.peer_close().expect(how).code(), None, "{how}");
    });
}

#[test]
fn wire_close_1014_is_shown_as_1000_and_recorded_as_sent() {
    let wire = close(1014, b"bad gateway");
    let mut shown = wire.clone();
    shown[2..4].copy_from_slice(&1000u16.to_be_bytes());
    all_splits(&wire, |how, out, err, f| {
        assert!(err.is_none(), "{how}");
        assert_eq!(out, shown, "{how}");
        let rec = f.peer_close().expect(how);
        assert_eq!(rec.code(), Some(1014), "{how}");
        assert_eq!(rec.reason(), b"bad gateway", "{how}");
        let (frame, valid) = reported_close(Some(rec), None);
        let frame = frame.unwrap();
        assert!(valid);
        assert_eq!(u16::from(frame.code), 1014);
        assert_eq!(frame.reason.as_str(), "bad gateway");
    });
}

#[test]
fn wire_invalid_codes_and_the_peers_own_1002_are_told_apart() {
    // tungstenite's substitute looks like this; the record says what was sent.
    let seen = Some(CloseFrame {
        code: CloseCode::Protocol,
        reason: "Protocol violation".into(),
    });
    for (code, reason, valid) in [
        (999u16, &b"bad"[..], false),
        (1005, b"", false),
        (1002, b"Protocol violation", true),
    ] {
        let (_, err, f) = feed(&close(code, reason), &[1]);
        assert!(err.is_none());
        let (frame, ok) = reported_close(f.peer_close(), seen.clone());
        let frame = frame.unwrap();
        assert_eq!(ok, valid, "{code}");
        assert_eq!(u16::from(frame.code), code);
        assert_eq!(frame.reason.as_bytes(), reason);
    }
}

#[test]
fn wire_length_with_top_bit_is_refused_after_the_frames_before_it() {
    let good = frame(0x81, None, b"good");
    let mut wire = good.clone();
    wire.extend_from_slice(&[0x82, 127]);
    wire.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    wire.extend_from_slice(b"12345");
    all_splits(&wire, |how, out, err, f| {
        let err = err.unwrap_or_else(|| panic!("{how}: not refused"));
        // The frames before it pass; of the bad header, at most the bytes
        // of it that came in earlier reads (tungstenite waits for the rest).
        assert_eq!(out[..good.len()], good, "{how}");
        assert!(out.len() < good.len() + 10, "{how}: {out:?}");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
        assert!(
            matches!(inner, Some(WireError::Protocol(m)) if m.contains("most significant")),
            "{how}: {err:?}"
        );
        assert!(f.check().is_err(), "{how}: later reads must fail too");
    });
    // The largest length RFC 6455 allows is not refused here.
    let mut ok = vec![0x82, 127];
    ok.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    ok.extend_from_slice(b"abc");
    let (out, err, _) = feed(&ok, &[1]);
    assert!(err.is_none());
    assert_eq!(out, ok);
}

#[test]
fn wire_masked_and_oversized_closes_are_left_to_tungstenite() {
    // Masked (a server must not mask): passed on whole, not taken as a close.
    let mut wire = frame(0x88, Some([1, 2, 3, 4]), &[0x03, 0xf6, b'x']);
    wire.extend(frame(0x81, None, b"next"));
    all_splits(&wire, |how, out, err, f| {
        assert!(err.is_none(), "{how}");
        assert_eq!(out, wire, "{how}");
        assert!(f.peer_close().is_none(), "{how}");
    });
    // A close over 125 bytes: tungstenite refuses it.
    let mut wire = close(1000, &[b'r'; 200]);
    wire.extend(frame(0x81, None, b"next"));
    let (out, err, f) = feed(&wire, &[7]);
    assert!(err.is_none());
    assert_eq!(out, wire);
    assert!(f.peer_close().is_none());
}

#[test]
fn wire_data_after_close_in_a_later_read_would_block() {
    let mut f = Inbound::default();
    let mut c = close(1000, b"");
    assert_eq!(f.filter(&mut c).unwrap(), 4);
    let mut late = frame(0x81, None, b"late");
    let err = f.filter(&mut late).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

/// A frame a server might send, for the property test.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..130),
        1 => prop::collection::vec(any::<u8>(), 0..70_000),
    ];
    let code = prop_oneof![
        Just(1000u16),
        Just(1014),
        Just(999),
        Just(4000),
        any::<u16>()
    ];
    prop_oneof![
        6 => (prop::sample::select(vec![0x81u8, 0x82, 0x01, 0x80, 0x89, 0x8A]), payload)
            .prop_map(|(op, p)| frame(op, None, &p)),
        1 => (code, prop::collection::vec(any::<u8>(), 0..=123))
            .prop_map(|(c, r)| close(c, &r)),
        1 => (any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(k, p)| frame(0x82, Some(k), &p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any frame sequence, in any chunking: the output is the input up to
    /// the end of the first close frame (its code shown as tungstenite
    /// accepts it), and the close is recorded as sent.
    #[test]
    fn wire_prop_output_is_input_up_to_the_close(
        frames in prop::collection::vec(any_frame(), 1..12),
        chunks in prop::collection::vec(1usize..200, 1..8),
    ) {
        let wire: Vec<u8> = frames.concat();
        let (out, err, f) = feed(&wire, &chunks);
        prop_assert!(err.is_none());
        // Where the first close frame ends, and its code.
        let mut at = 0;
        let mut expected = wire.clone();
        let mut close_at = None;
        for fr in &frames {
            let end = at + fr.len();
            if fr[0] == 0x88 {
                close_at = Some((at, end));
                break;
            }
            at = end;
        }
        match close_at {
            Some((start, end)) => {
                expected.truncate(end);
                let hl = header_len(wire[start + 1]);
                let code = u16::from_be_bytes([wire[start + hl], wire[start + hl + 1]]);
                expected[start + hl + 1] = shown_code(code) as u8;
                let rec = f.peer_close().expect("recorded");
                prop_assert_eq!(rec.code(), Some(code));
                prop_assert_eq!(rec.reason(), &wire[start + hl + 2..end]);
            }
            None => prop_assert!(f.peer_close().is_none()),
        }
        prop_assert!(out == expected, "output differs from the input");
    }
}
