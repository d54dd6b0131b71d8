//! Outboxes at the store boundary: entries created with their message, heads per key in order,
//! a held key blocks only itself, dead letters can be requeued.

mod support;

use bytes::Bytes;
use wyvern_store::{Delivery, InboxStatus, Outbox, OutboxState, Store, StoreOptions};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_per_key_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    for (n, key) in [(1, "A"), (2, "B"), (3, "A"), (4, "C"), (5, "B")] {
        store.commit(with_delivery(n, key)).await.unwrap();
    }
    store.close().await;
    let o = Outbox::open(dir.path()).unwrap();
    let heads = o.heads("adt", "chie", 100).unwrap();
    let ids: Vec<(&str, &str)> = heads
        .iter()
        .map(|h| {
            (
                h.order_key.as_str(),
                std::str::from_utf8(&h.payload).unwrap(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0].1.contains("|C1|") && ids[1].1.contains("|C2|") && ids[2].1.contains("|C4|"),
        "{ids:?}"
    );
    assert_eq!(
        o.heads("adt", "dcr", 100).unwrap()[0].payload,
        b"P1",
        "a payload of its own"
    );

    // A delivered head uncovers the next message of its key.
    o.delivered(heads[0].seq, "AA", 1).unwrap();
    let next: Vec<String> = o
        .heads("adt", "chie", 100)
        .unwrap()
        .iter()
        .map(|h| h.order_key.clone())
        .collect();
    assert_eq!(next, ["B", "A", "C"], "oldest head first");
    // Held: its key stops (the head stays, marked held); parked: the key goes on.
    let b = o
        .heads("adt", "chie", 100)
        .unwrap()
        .into_iter()
        .find(|h| h.order_key == "B")
        .unwrap();
    o.dead(b.seq, true, "AR: unknown patient", 2).unwrap();
    let c = o
        .heads("adt", "chie", 100)
        .unwrap()
        .into_iter()
        .find(|h| h.order_key == "C")
        .unwrap();
    o.dead(c.seq, false, "AR", 2).unwrap();
    let heads = o.heads("adt", "chie", 100).unwrap();
    let b_head = heads.iter().find(|h| h.order_key == "B").unwrap();
    assert_eq!(b_head.state, OutboxState::Held);
    assert!(
        heads.iter().all(|h| h.order_key != "C"),
        "C had one message, now parked"
    );
    assert_eq!(o.dead_letters(None, Some("chie"), 10).unwrap().len(), 2);
    assert_eq!(o.requeue(Some(b.seq), None, None, 3).unwrap(), 1);
    let b_head = o
        .heads("adt", "chie", 100)
        .unwrap()
        .into_iter()
        .find(|h| h.order_key == "B")
        .unwrap();
    assert_eq!((b_head.state, b_head.attempts), (OutboxState::Pending, 0));
    assert_eq!(o.depth("adt", "chie").unwrap().0, 3);
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
    let rows = |n: usize| -> Vec<i64> {
        o.key_rows("adt", "chie", "A", 10, usize::MAX)
            .unwrap()
            .into_iter()
            .chain(o.key_rows("adt", "dcr", "A", 10, usize::MAX).unwrap())
            .filter(|r| {
                std::str::from_utf8(&r.payload)
                    .unwrap()
                    .contains(&format!("C{n}|"))
                    || r.payload == format!("P{n}").as_bytes()
            })
            .map(|r| r.seq)
            .collect()
    };
    for seq in rows(1) {
        o.delivered(seq, "ok", 1).unwrap();
    }
    o.delivered(rows(2)[0], "ok", 1).unwrap();
    o.dead(rows(3)[0], false, "refused", 1).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    for n in 0..1_000 {
        store
            .commit(with_delivery(n, &format!("stuck-{n}")))
            .await
            .unwrap();
    }
    store.commit(with_delivery(1_000, "free")).await.unwrap();
    store.close().await;
    let o = Outbox::open(dir.path()).unwrap();
    // After every message's receipt (support::record's clock), so all are due at first.
    let now = 1_795_617_000_000 + 10_000_000;
    for h in o
        .due_heads("adt", "chie", now, 2_000, usize::MAX)
        .unwrap()
        .due
    {
        match h.order_key.as_str() {
            "free" => {}
            // Half held by a person's policy, half waiting for a retry far in the future.
            k if k.ends_with(['0', '2', '4', '6', '8']) => o.dead(h.seq, true, "AR", now).unwrap(),
            _ => o.retry_at(h.seq, now + 60_000, "timeout").unwrap(),
        }
    }
    let heads = o.due_heads("adt", "chie", now, 512, usize::MAX).unwrap();
    let keys: Vec<&str> = heads.due.iter().map(|h| h.order_key.as_str()).collect();
    assert_eq!(
        keys,
        ["free"],
        "the one due key is found behind 1,000 stuck ones"
    );
    o.delivered(heads.due[0].seq, "AA", now).unwrap();
    assert_eq!(
        o.due_heads("adt", "chie", now, 512, usize::MAX)
            .unwrap()
            .next_at_ms,
        Some(now + 60_000),
        "with nothing due, the worker learns when the earliest waiting key is"
    );
}

/// Issue 11 item 8: a pass was bounded in rows only (2,048 × 16 MiB could be read at once).
/// Now it stops at a byte budget — after the first row, which always goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_is_bounded_in_bytes_and_a_huge_message_still_goes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    for n in 0..5 {
        let mut r = with_delivery(n, "K");
        r.deliveries[1].payload = Some(Bytes::from(vec![b'x'; 1 << 20]));
        store.commit(r).await.unwrap();
    }
    store.close().await;
    let o = Outbox::open(dir.path()).unwrap();
    let mib = 1 << 20;
    let rows = |budget| o.key_rows("adt", "dcr", "K", 100, budget).unwrap().len();
    assert_eq!(rows(usize::MAX), 5);
    assert_eq!(rows(3 * mib), 3, "three 1 MiB messages fit in 3 MiB");
    assert_eq!(
        rows(2 * mib + 1),
        3,
        "the one that crosses the budget is the last"
    );
    assert_eq!(rows(1), 1, "a message larger than the budget goes alone");
    let far = 1_795_617_000_000 + 10_000_000;
    let heads = o.due_heads("adt", "dcr", far, 100, 1).unwrap();
    assert_eq!(heads.due.len(), 1);
}
