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
        },
        Delivery {
            route: "adt".into(),
            destination: "dcr".into(),
            order_key: key.into(),
            payload: Some(Bytes::from(format!("P{n}"))),
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
