//! Outboxes at the store boundary: entries created with their message, heads per key in order,
//! a held key blocks only itself, dead letters can be requeued.

mod support;

use bytes::Bytes;
use wyvern_store::{
    Delivery, DeliveryLog, InboxStatus, Outbox, OutboxState, Position, Settle, Store, StoreOptions,
    Update,
};

fn with_delivery(n: usize, key: &str) -> wyvern_store::InboxRecord {
    let mut r = support::record(
        n,
        InboxStatus::Accepted,
        format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r"),
    );
    r.deliveries = vec![
        Delivery {
            route: "adt".into(),
            destination: "chie".into(),
            order_key: key.into(),
            payload: None,
            content_type: None,
        },
        Delivery {
            route: "adt".into(),
            destination: "dcr".into(),
            order_key: key.into(),
            payload: Some(Bytes::from(format!("P{n}"))),
            content_type: None,
        },
    ];
    r
}

/// A store holding `records`, closed, and an outbox handle on it.
async fn stored(
    records: impl IntoIterator<Item = wyvern_store::InboxRecord>,
) -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(StoreOptions::new(dir.path())).expect("the store opens");
    for r in records {
        store.commit(r).await.expect("committed");
    }
    store.close().await;
    let o = Outbox::open(dir.path()).expect("the outbox opens");
    (dir, o)
}

/// The control ids of a pass's items, in order.
fn ids(items: &[wyvern_store::OutboxItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            let text = std::str::from_utf8(&i.payload).expect("text");
            text.split('|').nth(9).unwrap_or(text).to_string()
        })
        .collect()
}

/// Records `outcomes` (no rows waiting) and moves the cursor.
fn settle(o: &Outbox, lane: i64, outcomes: Vec<(i64, String, Update)>, cursor: Position) {
    let s = Settle {
        outcomes,
        waiting: vec![],
        cursor,
        lease: 0,
    };
    o.settle(lane, &s).expect("settled");
}

/// A pass's waiting rows as a settle names them.
fn by_seq(waiting: &[(Position, String)]) -> Vec<(i64, String)> {
    waiting
        .iter()
        .map(|(at, key)| (at.seq, key.clone()))
        .collect()
}

/// Every item delivered, the cursor moved to the pass's end.
fn all_delivered(pass: &wyvern_store::Pass, at_ms: i64) -> Settle {
    Settle {
        outcomes: pass
            .items
            .iter()
            .map(|i| (i.seq, i.order_key.clone(), Update::Delivered { at_ms }))
            .collect(),
        waiting: by_seq(&pass.waiting),
        cursor: pass.to,
        lease: pass.lease,
    }
}

const NOW: i64 = 1_795_617_000_000 + 10_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_keeps_each_keys_order_and_dead_letters_hold_or_park() {
    let keys = [(1, "A"), (2, "B"), (3, "A"), (4, "C"), (5, "B")];
    let (_dir, o) = stored(keys.map(|(n, key)| with_delivery(n, key))).await;
    let chie = o.lane("adt", "chie").unwrap();
    let dcr = o.lane("adt", "dcr").unwrap();
    assert_ne!(chie, dcr);
    assert_eq!(o.lane("adt", "chie").unwrap(), chie, "a lane keeps its id");

    // One message per key in a pass: the second of A and of B wait behind the first.
    let pass = o.next_pass(chie, NOW, 100, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&pass.items), ["C1", "C2", "C4"]);
    assert_eq!(pass.waiting.len(), 2);
    let dcr_pass = o.next_pass(dcr, NOW, 100, usize::MAX, false, None).unwrap();
    assert_eq!(
        dcr_pass.items.len(),
        5,
        "a pipelining destination takes them all"
    );
    assert_eq!(dcr_pass.items[0].payload, b"P1", "a payload of its own");

    // C1 delivered; C2 held: its key B stops; C4 parked: its key C goes on.
    let (c1, c2, c4) = (&pass.items[0], &pass.items[1], &pass.items[2]);
    let held = Update::Dead {
        hold: true,
        error: "AR: unknown patient".into(),
        at_ms: NOW,
    };
    let parked = Update::Dead {
        hold: false,
        error: "AR".into(),
        at_ms: NOW,
    };
    o.settle(
        chie,
        &Settle {
            outcomes: vec![
                (c1.seq, "A".into(), Update::Delivered { at_ms: NOW }),
                (c2.seq, "B".into(), held),
                (c4.seq, "C".into(), parked),
            ],
            waiting: by_seq(&pass.waiting),
            cursor: pass.to,
            lease: pass.lease,
        },
    )
    .unwrap();
    let pass = o.next_pass(chie, NOW, 100, usize::MAX, true, None).unwrap();
    assert_eq!(
        ids(&pass.items),
        ["C3"],
        "A's next goes; B's waits behind C2"
    );
    o.settle(chie, &all_delivered(&pass, NOW)).unwrap();
    let quiet = o.next_pass(chie, NOW, 100, usize::MAX, true, None).unwrap();
    assert!(quiet.items.is_empty(), "{:?}", ids(&quiet.items));
    assert_eq!(quiet.next_at_ms, None, "a held key is not a retry");
    assert_eq!(o.dead_letters(None, Some("chie"), 10).unwrap().len(), 2);
    assert_eq!(
        o.depth("adt", "chie").unwrap().0,
        1,
        "C5, waiting behind C2"
    );
    let states: Vec<(String, OutboxState)> = (1..=5)
        .map(|n| {
            let id = &dcr_pass.items[n - 1].message_id;
            let chie = o
                .of_message(id)
                .unwrap()
                .into_iter()
                .find(|d| d.destination == "chie")
                .unwrap();
            (format!("C{n}"), chie.state)
        })
        .collect();
    use OutboxState::*;
    let expected = [Delivered, Held, Delivered, Dead, Pending];
    assert_eq!(
        states.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        expected,
        "{states:?}"
    );

    // Retried by a person: C2 goes, then C5 after it.
    assert_eq!(o.requeue(Some(c2.seq), None, None, NOW).unwrap(), 1);
    let pass = o.next_pass(chie, NOW, 100, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&pass.items), ["C2"]);
    assert_eq!((pass.items[0].state, pass.items[0].attempts), (Pending, 0));
    o.settle(chie, &all_delivered(&pass, NOW)).unwrap();
    let pass = o.next_pass(chie, NOW, 100, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&pass.items), ["C5"]);
    o.settle(chie, &all_delivered(&pass, NOW)).unwrap();
    assert_eq!(o.depth("adt", "chie").unwrap(), (0, None));
    assert_eq!(o.dead_letters(None, Some("chie"), 10).unwrap().len(), 1);
}

/// The cursor is the whole record of a plain delivery: nothing is written per message, and a
/// pass that was read but never settled (a crash) is read again — at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_messages_cost_no_row_and_an_unsettled_pass_comes_again() {
    let (dir, o) = stored((0..100).map(|n| with_delivery(n, &format!("K{}", n % 7)))).await;
    let lane = o.lane("adt", "dcr").unwrap();
    let first = o.next_pass(lane, NOW, 60, usize::MAX, false, None).unwrap();
    assert_eq!(first.items.len(), 60);
    let again = o.next_pass(lane, NOW, 60, usize::MAX, false, None).unwrap();
    assert_eq!(again, first, "not settled: the same pass again");
    o.settle(lane, &all_delivered(&first, NOW)).unwrap();
    let rest = o.next_pass(lane, NOW, 60, usize::MAX, false, None).unwrap();
    assert_eq!(rest.items.len(), 40);
    assert!(rest.items[0].seq > first.items[59].seq);
    o.settle(lane, &all_delivered(&rest, NOW)).unwrap();
    assert_eq!(o.depth("adt", "dcr").unwrap(), (0, None));
    let exceptions: i64 = rusqlite::Connection::open(dir.path().join(wyvern_store::DB_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM delivery_exceptions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(exceptions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_finished_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    for n in 1..=4 {
        store.commit(with_delivery(n, "A")).await.unwrap();
    }
    let mut filtered = support::record(9, InboxStatus::Filtered, "MSH|^~\\&|X".into());
    filtered.envelope.received_at_ms -= 1;
    store.commit(filtered).await.unwrap();
    store.close().await;
    let o = Outbox::open(dir.path()).unwrap();
    // Message 1: delivered to both. Message 2: delivered to one, pending at the other.
    // Message 3: one delivery dead-lettered. Message 4: untouched (pending).
    let chie = o.lane("adt", "chie").unwrap();
    let dcr = o.lane("adt", "dcr").unwrap();
    let pass = o.next_pass(chie, NOW, 3, usize::MAX, false, None).unwrap();
    let dead = Update::Dead {
        hold: false,
        error: "refused".into(),
        at_ms: NOW,
    };
    let delivered = Update::Delivered { at_ms: NOW };
    let settle = |lane, outcomes: Vec<(i64, Update)>, cursor| {
        let outcomes = outcomes
            .into_iter()
            .map(|(seq, u)| (seq, "A".to_string(), u))
            .collect();
        settle(&o, lane, outcomes, cursor)
    };
    let s = |i: usize| pass.items[i].seq;
    settle(
        chie,
        vec![
            (s(0), delivered.clone()),
            (s(1), delivered.clone()),
            (s(2), dead),
        ],
        pass.to,
    );
    let pass = o.next_pass(dcr, NOW, 1, usize::MAX, false, None).unwrap();
    settle(dcr, vec![(pass.items[0].seq, delivered)], pass.to);
    let far_future = 1_795_617_000_000 + 10_000_000;
    let pruned = o.prune_all(far_future).unwrap();
    assert_eq!(
        pruned,
        wyvern_store::Pruned {
            messages: 2,
            deliveries: 2
        },
        "message 1 (both delivered) and the filtered one (no deliveries) go"
    );
    let reader = wyvern_store::InboxReader::open(dir.path()).unwrap();
    let left: Vec<String> = reader
        .list(&wyvern_store::InboxQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter_map(|r| r.control_id)
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(!left.contains(&"C1".to_string()) && !left.contains(&"C9".to_string()));
    assert_eq!(
        o.prune_all(1).unwrap(),
        wyvern_store::Pruned::default(),
        "nothing is older than that"
    );
}

/// Issue 11 item 1: a destination's held and backed-off keys must not hide its due ones, however
/// many there are (the limit applied before skipping them stopped every other key for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_held_or_waiting_keys_do_not_hide_a_due_one() {
    let stuck = (0..1_000).map(|n| with_delivery(n, &format!("stuck-{n}")));
    let (_dir, o) = stored(stuck.chain([with_delivery(1_000, "free")])).await;
    let lane = o.lane("adt", "chie").unwrap();
    let pass = o
        .next_pass(lane, NOW, 1_000, usize::MAX, true, None)
        .unwrap();
    assert_eq!(pass.items.len(), 1_000);
    // Half held by a person's policy, half waiting for a retry far in the future.
    let outcomes = pass
        .items
        .iter()
        .map(|h| {
            let update = if h.order_key.ends_with(['0', '2', '4', '6', '8']) {
                Update::Dead {
                    hold: true,
                    error: "AR".into(),
                    at_ms: NOW,
                }
            } else {
                Update::RetryAt {
                    next_at_ms: NOW + 60_000,
                    error: "timeout".into(),
                }
            };
            (h.seq, h.order_key.clone(), update)
        })
        .collect();
    settle(&o, lane, outcomes, pass.to);
    let pass = o.next_pass(lane, NOW, 512, usize::MAX, true, None).unwrap();
    let keys: Vec<&str> = pass.items.iter().map(|h| h.order_key.as_str()).collect();
    assert_eq!(
        keys,
        ["free"],
        "the one due key is found behind 1,000 stuck ones"
    );
    o.settle(lane, &all_delivered(&pass, NOW)).unwrap();
    assert_eq!(
        o.next_pass(lane, NOW, 512, usize::MAX, true, None)
            .unwrap()
            .next_at_ms,
        Some(NOW + 60_000),
        "with nothing due, the worker learns when the earliest waiting key is"
    );
    let due = o
        .next_pass(lane, NOW + 60_000, 2_000, usize::MAX, true, None)
        .unwrap();
    assert_eq!(due.items.len(), 500, "the retries, once due");
}

/// Issue 11 item 8: a pass was bounded in rows only (2,048 × 16 MiB could be read at once).
/// Now it stops at a byte budget — after the first row, which always goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_is_bounded_in_bytes_and_a_huge_message_still_goes_alone() {
    let (_dir, o) = stored((0..5).map(|n| {
        let mut r = with_delivery(n, "K");
        r.deliveries[1].payload = Some(Bytes::from(vec![b'x'; 1 << 20]));
        r
    }))
    .await;
    let lane = o.lane("adt", "dcr").unwrap();
    let mib = 1 << 20;
    let rows = |budget| {
        o.next_pass(lane, NOW, 100, budget, false, None)
            .unwrap()
            .items
            .len()
    };
    assert_eq!(rows(usize::MAX), 5);
    assert_eq!(rows(3 * mib), 3, "three 1 MiB messages fit in 3 MiB");
    assert_eq!(
        rows(2 * mib + 1),
        3,
        "the one that crosses the budget is the last"
    );
    assert_eq!(rows(1), 1, "a message larger than the budget goes alone");
}

/// A destination that sends in parallel: a row that waits in the pass in flight (behind its
/// key's row in the pass before) is not recorded as waiting until that pass is settled, so
/// the pass read ahead of it must hold its key back too — or a later row of the key is sent
/// before the one waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_waiting_in_the_pass_in_flight_holds_its_key_in_the_pass_read_ahead() {
    let keys = ["K", "K", "X", "K"];
    let (_dir, o) = stored(keys.iter().enumerate().map(|(n, k)| with_delivery(n, k))).await;
    let lane = o.lane("adt", "chie").unwrap();
    let first = o.next_pass(lane, NOW, 1, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&first.items), ["C0"]);
    let ahead = wyvern_store::Ahead::after(&first, true);
    let second = o
        .next_pass(lane, NOW, 2, usize::MAX, true, Some(&ahead))
        .unwrap();
    assert_eq!(ids(&second.items), ["C2"], "C1 waits behind C0, in flight");
    assert_eq!(second.waiting.len(), 1);
    o.settle(lane, &all_delivered(&first, NOW)).unwrap();
    let ahead = wyvern_store::Ahead::after(&second, true);
    let third = o
        .next_pass(lane, NOW, 100, usize::MAX, true, Some(&ahead))
        .unwrap();
    assert_eq!(
        ids(&third.items),
        Vec::<String>::new(),
        "C3 waits behind C1, which waits in the pass in flight"
    );
    o.settle(lane, &all_delivered(&second, NOW)).unwrap();
    o.settle(lane, &all_delivered(&third, NOW)).unwrap();
    let mut sent = Vec::new();
    for _ in 0..4 {
        let pass = o.next_pass(lane, NOW, 100, usize::MAX, true, None).unwrap();
        sent.extend(ids(&pass.items));
        o.settle(lane, &all_delivered(&pass, NOW)).unwrap();
    }
    assert_eq!(sent, ["C1", "C3"], "K's in order");
}

/// A pass read while the one before it is still being sent (a streaming destination) starts
/// where that one ended, never reads its exception rows again, and — for a destination that
/// sends in parallel — holds back the keys it is sending; settling both in order leaves the
/// same record as two passes one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_read_ahead_of_one_in_flight_takes_up_where_it_ends() {
    let keys = ["A", "B", "A", "C", "D", "B"];
    let (_dir, o) = stored(keys.iter().enumerate().map(|(n, k)| with_delivery(n, k))).await;
    let lane = o.lane("adt", "chie").unwrap();
    // A retry of A falls due, so the first pass holds an exception row.
    let first = o.next_pass(lane, NOW, 1, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&first.items), ["C0"]);
    let retry = Update::RetryAt {
        next_at_ms: NOW,
        error: "503".into(),
    };
    settle(
        &o,
        lane,
        vec![(first.items[0].seq, "A".into(), retry)],
        first.to,
    );

    let prev = o.next_pass(lane, NOW, 2, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&prev.items), ["C0", "C1"], "A's retry, then the log");
    let ahead = wyvern_store::Ahead {
        from: prev.to,
        seqs: prev.items.iter().map(|i| i.seq).collect(),
        keys: prev.items.iter().map(|i| i.order_key.clone()).collect(),
    };
    let next = o
        .next_pass(lane, NOW, 100, usize::MAX, true, Some(&ahead))
        .unwrap();
    assert_eq!(
        ids(&next.items),
        ["C3", "C4"],
        "not C0 again (in flight); C2 waits behind A's retry, C5 behind B's C1 (in flight)"
    );
    assert_eq!(next.waiting.len(), 2);
    o.settle(lane, &all_delivered(&prev, NOW)).unwrap();
    o.settle(lane, &all_delivered(&next, NOW)).unwrap();
    let last = o.next_pass(lane, NOW, 100, usize::MAX, true, None).unwrap();
    assert_eq!(ids(&last.items), ["C2", "C5"], "the waiting ones, in turn");
    o.settle(lane, &all_delivered(&last, NOW)).unwrap();
    assert_eq!(o.depth("adt", "chie").unwrap(), (0, None));
}

/// A settle meets the write lock held by another writer (the index thread's commit): it waits
/// for it and then records, instead of failing as busy. This guards the busy handler the
/// worker's connection is given (one that gave up at once fails here); that it waits in short
/// steps rather than SQLite's growing sleeps is a matter of time, measured, never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_waits_for_a_writer_holding_the_lock_and_then_records() {
    let (dir, o) = stored((0..10).map(|n| with_delivery(n, &format!("K{n}")))).await;
    let lane = o.lane("adt", "dcr").unwrap();
    let pass = o.next_pass(lane, NOW, 10, usize::MAX, false, None).unwrap();
    let (held, release) = std::sync::mpsc::channel();
    let db = dir.path().join(wyvern_store::DB_FILE);
    let writer = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        held.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        conn.execute_batch("COMMIT").unwrap();
    });
    release.recv().unwrap();
    o.settle(lane, &all_delivered(&pass, NOW))
        .expect("recorded once the other writer committed");
    writer.join().unwrap();
    assert_eq!(o.depth("adt", "dcr").unwrap(), (0, None));
}
