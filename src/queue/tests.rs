//! Unit tests of the inbox: bounds and pause/resume, each overflow policy,
//! the end of the stream, and waiting with and without a spin.

use super::*;

fn inbox(cap: usize, policy: Overflow) -> (Arc<Inbox>, Arc<AtomicBool>) {
    let woke = Arc::new(AtomicBool::new(false));
    let w = woke.clone();
    let resume = Box::new(move || w.store(true, Ordering::SeqCst));
    (
        Arc::new(Inbox::new(
            cap,
            usize::MAX,
            policy,
            None,
            false,
            Duration::ZERO,
            resume,
        )),
        woke,
    )
}

fn push(q: &Inbox, texts: &[&str]) -> (bool, VecDeque<Item>) {
    let mut pending = VecDeque::new();
    for t in texts {
        q.classify_into(Message::text(*t), &mut pending);
    }
    let all = q.push_batch(&mut pending, 0, false);
    (all, pending)
}

fn drain(q: &Inbox) -> Vec<String> {
    let mut out = vec![];
    while let Ok(Some(m)) = q.try_pop() {
        out.push(m.into_text().unwrap().to_string());
    }
    out
}

fn check_identity(q: &Inbox) {
    let mut s = Stats::default();
    q.fill(&mut s);
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.queued as u64
    );
}

#[test]
fn block_pauses_at_bound_and_resumes_at_half() {
    let (q, woke) = inbox(4, Overflow::Block);
    let (all, pending) = push(&q, &["1", "2", "3", "4", "5", "6"]);
    assert!(!all);
    assert_eq!(pending.len(), 2);
    assert!(q.is_paused());
    check_identity(&q);
    q.pop_deadline(None).unwrap();
    assert!(
        q.is_paused() && !woke.load(Ordering::SeqCst),
        "no flapping above low water"
    );
    q.pop_deadline(None).unwrap();
    assert!(!q.is_paused() && woke.load(Ordering::SeqCst));
    let mut pending = pending;
    assert!(q.push_batch(&mut pending, 0, false));
    assert_eq!(drain(&q), ["3", "4", "5", "6"]);
    check_identity(&q);
}

#[test]
fn bytes_bound_admits_one_oversized_message_when_empty() {
    let woke = Box::new(|| {});
    let q = Inbox::new(100, 10, Overflow::Block, None, false, Duration::ZERO, woke);
    let (all, _) = push(&q, &["0123456789ABCDEF"]);
    assert!(all, "an empty inbox takes any one message");
    let (all, pending) = push(&q, &["x"]);
    assert!(!all && pending.len() == 1);
}

#[test]
fn drop_newest_and_oldest() {
    let (q, _) = inbox(3, Overflow::DropNewest);
    push(&q, &["1", "2", "3", "4", "5"]);
    assert_eq!(drain(&q), ["1", "2", "3"]);
    check_identity(&q);
    let (q, _) = inbox(3, Overflow::DropOldest);
    push(&q, &["1", "2", "3", "4", "5"]);
    check_identity(&q);
    assert_eq!(drain(&q), ["3", "4", "5"]);
    let mut s = Stats::default();
    q.fill(&mut s);
    assert_eq!(s.dropped.oldest, 2);
}

#[test]
fn priority_sheds_lowest_oldest_and_blocks_on_top() {
    let prio = |m: &Message| -> u8 {
        match m.to_text().unwrap().as_bytes()[0] {
            b'h' => Overflow::TOP,
            b'm' => 5,
            _ => 1,
        }
    };
    let (q, _) = inbox(3, Overflow::priority(prio));
    push(&q, &["l1", "m1", "l2", "h1"]); // l1 evicted
    push(&q, &["l3"]); // nothing lower: dropped
    push(&q, &["h2"]); // evicts l2
    check_identity(&q);
    assert_eq!(drain(&q), ["m1", "h1", "h2"]);
    let (q, _) = inbox(2, Overflow::priority(prio));
    let (all, pending) = push(&q, &["h1", "h2", "h3"]);
    assert!(!all && pending.len() == 1, "top priority is never dropped");
    check_identity(&q);
}

#[test]
fn priority_sheds_by_what_is_queued_after_the_front_was_taken() {
    // The digit is the priority. The consumer's taking (try_pop, which
    // takes ahead from the front) removes the lowest; what is left decides.
    let prio = |m: &Message| -> u8 { m.to_text().unwrap().as_bytes()[0] - b'0' };
    let (q, _) = inbox(4, Overflow::priority(prio));
    push(&q, &["1a", "5a", "5b", "5c"]);
    push(&q, &["5d"]); // evicts 1a
    push(&q, &["5e"]); // nothing lower: dropped
    push(&q, &["3a"]); // lower than all: dropped
    check_identity(&q);
    assert_eq!(drain(&q), ["5a", "5b", "5c", "5d"]);
    push(&q, &["1b", "5f", "5g", "5h"]);
    assert_eq!(q.try_pop().unwrap().unwrap().to_text().unwrap(), "1b");
    // The front (5f, 5g, 5h) is the consumer's now, out of the policy's
    // reach, and still counts.
    push(&q, &["4a"]); // the room 1b left
    push(&q, &["6a"]); // evicts 4a: the taken-ahead 5s are out of reach
    push(&q, &["5i"]); // nothing lower within reach: dropped
    check_identity(&q);
    assert_eq!(drain(&q), ["5f", "5g", "5h", "6a"]);
    push(&q, &["2a", "2b", "7a", "7b"]);
    push(&q, &["3b"]); // evicts 2a
    push(&q, &["3c"]); // evicts 2b
    push(&q, &["3d"]); // nothing lower left: dropped
    push(&q, &["8a"]); // evicts 3b, the oldest of the lowest
    check_identity(&q);
    assert_eq!(drain(&q), ["7a", "7b", "3c", "8a"]);
    let mut s = Stats::default();
    q.fill(&mut s);
    assert_eq!(s.dropped.priority, 9);
}

#[test]
fn conflation_keeps_latest_per_key_in_place() {
    let key = |m: &Message| {
        m.to_text()
            .ok()
            .and_then(|t| t.split_once(':').map(|(k, _)| k.to_string()))
    };
    let (q, _) = inbox(2, Overflow::conflate(key));
    push(&q, &["a:1", "b:1", "a:2", "b:2", "a:3"]);
    check_identity(&q);
    assert_eq!(drain(&q), ["a:3", "b:2"]);
    let (all, pending) = push(&q, &["a:4", "b:3", "c:1"]);
    assert!(
        !all && pending.len() == 1,
        "a new key in a full inbox waits"
    );
    check_identity(&q);
}

#[test]
fn end_comes_after_queued_messages() {
    let (q, _) = inbox(8, Overflow::Block);
    push(&q, &["1"]);
    let mut left = VecDeque::new();
    q.classify_into(Message::text("2"), &mut left);
    q.finish(&mut left, Error::Closed(None));
    assert_eq!(drain(&q), ["1", "2"]);
    assert!(q.pop_deadline(None).unwrap_err().is_closed());
    assert!(
        q.pop_deadline(None).unwrap_err().is_closed(),
        "the end repeats"
    );
}

#[test]
fn pop_times_out_and_wakes_on_push() {
    let (q, _) = inbox(8, Overflow::Block);
    let t = Instant::now();
    assert!(q
        .pop_deadline(Some(t + Duration::from_millis(20)))
        .unwrap()
        .is_none());
    assert!(t.elapsed() >= Duration::from_millis(20));
    let q2 = q.clone();
    let h =
        std::thread::spawn(move || q2.pop_deadline(Some(Instant::now() + Duration::from_secs(10))));
    std::thread::sleep(Duration::from_millis(30));
    push(&q, &["x"]);
    assert!(h.join().unwrap().unwrap().is_some());
}

#[test]
fn a_busy_wait_keeps_to_the_deadline_and_takes_what_comes() {
    let resume = Box::new(|| {});
    let spin = Duration::from_secs(2);
    let q = Arc::new(Inbox::new(
        8,
        usize::MAX,
        Overflow::DropOldest,
        None,
        false,
        spin,
        resume,
    ));
    let t = Instant::now();
    assert!(q
        .pop_deadline(Some(t + Duration::from_millis(20)))
        .unwrap()
        .is_none());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(20) && waited < Duration::from_secs(1),
        "the spin ends at the caller's deadline, not its own: {waited:?}"
    );
    // A message pushed while the consumer spins, and one after its spin
    // has given way to parking, both arrive.
    let q2 = q.clone();
    let h = std::thread::spawn(move || {
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        let first = q2.pop_deadline(deadline).unwrap();
        let second = q2.pop_deadline(deadline).unwrap();
        (first, second)
    });
    std::thread::sleep(Duration::from_millis(30));
    push(&q, &["spun"]);
    std::thread::sleep(Duration::from_millis(2500));
    push(&q, &["parked"]);
    let (first, second) = h.join().unwrap();
    assert_eq!(first.unwrap().into_text().unwrap().as_str(), "spun");
    assert_eq!(second.unwrap().into_text().unwrap().as_str(), "parked");
}

/// The priority policy against a plain model of it (every candidate below
/// the incoming priority, sorted by priority and age, evicted until the
/// message fits), over random sizes and priorities under a byte bound, so
/// that evictions reach across several priorities.
#[test]
fn priority_matches_a_model_under_a_byte_bound() {
    const CAP: usize = 8;
    const CAP_BYTES: usize = 100;
    let fits = |len: usize, bytes: usize, size: usize| {
        len < CAP && (len == 0 || bytes + size <= CAP_BYTES)
    };
    let prio = |m: &Message| -> u8 {
        match m {
            Message::Binary(b) => b[0],
            _ => 0,
        }
    };
    let q = Inbox::new(
        CAP,
        CAP_BYTES,
        Overflow::priority(prio),
        None,
        false,
        Duration::ZERO,
        Box::new(|| {}),
    );
    let mut model: VecDeque<(u8, usize, u32)> = VecDeque::new();
    let mut seed = 0x2545_f491_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut dropped = 0u64;
    for id in 0..5_000u32 {
        let r = next();
        if r % 97 == 0 {
            // The consumer takes everything: both start again empty.
            let mut got = vec![];
            while let Some(m) = q.try_pop().unwrap() {
                let b = m.into_data();
                got.push(u32::from_be_bytes(b[1..5].try_into().unwrap()));
            }
            let want: Vec<u32> = model.drain(..).map(|(_, _, id)| id).collect();
            assert_eq!(got, want, "queued before message {id}");
            continue;
        }
        let p = if r % 11 == 0 {
            Overflow::TOP
        } else {
            (r >> 8) as u8 % 6
        };
        let size = 5 + (r >> 16) as usize % 36;
        let mut payload = vec![p];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.resize(size, 0);
        // The model.
        let (len, bytes) = (model.len(), model.iter().map(|m| m.1).sum::<usize>());
        let blocked = if fits(len, bytes, size) {
            model.push_back((p, size, id));
            false
        } else {
            let mut cands: Vec<(u8, usize)> = model
                .iter()
                .enumerate()
                .filter(|(_, m)| m.0 < p)
                .map(|(i, m)| (m.0, i))
                .collect();
            cands.sort_unstable();
            let (mut l, mut b, mut victims) = (len, bytes, vec![]);
            for (_, i) in cands {
                if fits(l, b, size) {
                    break;
                }
                l -= 1;
                b -= model[i].1;
                victims.push(i);
            }
            if fits(l, b, size) {
                victims.sort_unstable_by(|a, b| b.cmp(a));
                dropped += victims.len() as u64;
                for i in victims {
                    model.remove(i);
                }
                model.push_back((p, size, id));
                false
            } else if p == Overflow::TOP {
                true
            } else {
                dropped += 1;
                false
            }
        };
        // The inbox.
        let mut pending = VecDeque::new();
        q.classify_into(Message::binary(payload), &mut pending);
        let all = q.push_batch(&mut pending, 0, false);
        assert_eq!(!all, blocked, "blocked at message {id}");
        if blocked {
            // Top priority with no room: the reader would pause. Start again.
            while q.try_pop().unwrap().is_some() {}
            model.clear();
        }
        let mut s = Stats::default();
        q.fill(&mut s);
        assert_eq!(s.dropped.priority, dropped, "drops after message {id}");
        assert_eq!(s.queued, model.len(), "queued after message {id}");
    }
}

/// std's `Condvar` wakes with a syscall whether or not anyone sleeps, and a
/// woken consumer can take many batches to get a CPU: it is woken once,
/// until it has run. In the middle of a read turn it is woken only once
/// `WAKE_QUEUED` (at most half the bound) wait.
#[test]
fn a_sleeping_consumer_is_woken_once_until_it_runs() {
    // A bound above twice `WAKE_QUEUED`, so that it, not half the bound, counts.
    let (q, _) = inbox(4 * WAKE_QUEUED, Overflow::Block);
    let wakes = |q: &Inbox| q.lock().wakes;
    // A consumer parks, as `pop_deadline` does.
    q.lock().waiting += 1;
    for _ in 0..5 {
        push(&q, &["x"]);
    }
    assert_eq!(wakes(&q), 1, "five pushes, one wake-up");
    // It runs, takes everything, and parks again: the next push wakes it.
    q.lock().woke();
    assert_eq!(drain(&q).len(), 5);
    q.lock().waiting += 1;
    let mut pending = VecDeque::new();
    let mut pushed = 0;
    while pushed < WAKE_QUEUED - 64 {
        for _ in 0..64 {
            q.classify_into(Message::text("y"), &mut pending);
        }
        assert!(q.push_batch(&mut pending, 0, true));
        pushed += 64;
    }
    assert_eq!(
        wakes(&q),
        1,
        "in a read turn, below WAKE_QUEUED: no wake-up"
    );
    for _ in 0..64 {
        q.classify_into(Message::text("y"), &mut pending);
    }
    assert!(q.push_batch(&mut pending, 0, true));
    assert_eq!(wakes(&q), 2, "WAKE_QUEUED waiting: woken");
    q.lock().woke();
    // A small bound wakes it at half: it would pause the reader first.
    let (q, _) = inbox(8, Overflow::Block);
    q.lock().waiting += 1;
    let mut pending = VecDeque::new();
    for _ in 0..4 {
        q.classify_into(Message::text("z"), &mut pending);
    }
    assert!(q.push_batch(&mut pending, 0, true));
    assert_eq!(wakes(&q), 1, "half of a bound of 8");
    // Larger messages: once `WAKE_BYTES` wait, however few they are.
    let (q, _) = inbox(1024, Overflow::Block);
    q.lock().waiting += 1;
    let big = "b".repeat(WAKE_BYTES / 4);
    for n in 1..=4 {
        let mut pending = VecDeque::new();
        q.classify_into(Message::text(big.as_str()), &mut pending);
        assert!(q.push_batch(&mut pending, 0, true));
        assert_eq!(wakes(&q), u64::from(n == 4), "{n} x WAKE_BYTES / 4");
    }
}

/// A policy that keeps the queue short (conflation, here four keys) still
/// wakes its consumer in the middle of a flood: the thresholds count what
/// was pushed since it began to wait, not what is queued. (Counting what was
/// queued, the flood demo's conflation handler saw 32 of 200,000 messages,
/// all at the end.)
#[test]
fn a_short_queue_wakes_its_consumer_in_a_flood() {
    let (q, _) = inbox(
        1000,
        Overflow::conflate(|m: &Message| Some((m.len() % 4).to_string())),
    );
    q.lock().waiting += 1;
    let mut pending = VecDeque::new();
    let mut pushed = 0;
    while pushed < 500 {
        for i in 0..50 {
            q.classify_into(Message::text("k".repeat(1 + i % 4)), &mut pending);
        }
        assert!(q.push_batch(&mut pending, 0, true));
        pushed += 50;
        assert!(q.len() <= 4, "conflated to one per key");
        let wakes = q.lock().wakes;
        assert_eq!(wakes, u64::from(pushed >= 500), "after {pushed} pushed");
    }
}

/// Where the consumer may read the socket itself, one batch wakes it: it
/// then takes over reading, rather than drain a deeper inbox while the
/// reader keeps reading ahead.
#[test]
fn a_consumer_that_may_read_directly_is_woken_after_one_batch() {
    let q = Inbox::new(
        8192,
        usize::MAX,
        Overflow::Block,
        None,
        true,
        Duration::ZERO,
        Box::new(|| {}),
    );
    assert!(q.allows_direct());
    q.lock().waiting += 1;
    let mut pending = VecDeque::new();
    for n in 1..=DIRECT_WAKE {
        q.classify_into(Message::text("d"), &mut pending);
        assert!(q.push_batch(&mut pending, 0, true));
        assert_eq!(q.lock().wakes, u64::from(n == DIRECT_WAKE), "after {n}");
    }
}
