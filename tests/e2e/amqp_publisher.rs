//! The AMQP publisher against the real broker, below the engine: what each confirm, nack,
//! return and closed channel means for each message of a batch, bodies larger than a frame,
//! and refused credentials named.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use wyvern_connectors::amqp::{AmqpPublisher, AmqpQueueSpec, AmqpTarget, Outgoing, PublishError};

use crate::amqp::{BROKER, amqp_url};

fn target(url: &str, name: &str, bind: &str) -> AmqpTarget {
    AmqpTarget {
        url: url.into(),
        exchange: name.into(),
        queue: Some(AmqpQueueSpec {
            name: name.into(),
            bind: bind.into(),
            quorum: false,
        }),
    }
}

fn outgoing<'a>(key: &str, body: &'a [u8], id: &'a str, lane: u64) -> Outgoing<'a> {
    Outgoing {
        routing_key: key.into(),
        body,
        message_id: id,
        content_type: "x-application/hl7-v2+er7",
        lane,
    }
}

async fn publish(p: &mut AmqpPublisher, items: &[Outgoing<'_>]) -> Vec<Result<(), PublishError>> {
    let results = tokio::time::timeout(Duration::from_secs(20), async {
        p.start_many(items).await.confirmed().await
    })
    .await
    .expect("every confirm within 20 s");
    p.settled(&results).await;
    results
}

fn verdicts(results: &[Result<(), PublishError>]) -> Vec<String> {
    results
        .iter()
        .map(|r| match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        })
        .collect()
}

async fn channel(url: &str) -> (Connection, lapin::Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// Takes (and acks) every message in `queue`, then deletes it.
async fn drain_and_delete(ch: &lapin::Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .expect("basic_get")
    {
        m.delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        got.push(m.delivery);
    }
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    got
}

/// Each message's verdict is its own: in one batch on one channel, the broker's return of the
/// middle message (no binding for its key) fails only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_fails_only_the_message_it_names() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-pub-return-{}", std::process::id());
    let mut p = AmqpPublisher::new(target(&url, &name, "adt.A01"));
    let ids = ["m1", "m2", "m3"];
    let items = [
        outgoing("adt.A01", b"one", ids[0], 0),
        outgoing("adt.A08", b"two", ids[1], 0),
        outgoing("adt.A01", b"three", ids[2], 0),
    ];
    let v = verdicts(&publish(&mut p, &items).await);
    let (_conn, ch) = channel(&url).await;
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(v[0], "ok");
    assert!(
        v[1].contains("unroutable") && v[1].contains("adt.A08"),
        "{v:?}"
    );
    assert_eq!(v[2], "ok");
}

/// A queue that refuses publishes past its length (`x-overflow: reject-publish`) nacks them:
/// the first three of five are confirmed, the last two fail as worth retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_fails_only_the_messages_refused() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-pub-nack-{}", std::process::id());
    let (_conn, ch) = channel(&url).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(3));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .expect("declare a queue of at most 3");
    let mut p = AmqpPublisher::new(AmqpTarget {
        url: url.clone(),
        exchange: String::new(),
        queue: None,
    });
    let ids: Vec<String> = (1..=5).map(|n| format!("n{n}")).collect();
    let items: Vec<Outgoing<'_>> = ids.iter().map(|id| outgoing(&name, b"x", id, 3)).collect();
    let v = verdicts(&publish(&mut p, &items).await);
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(&v[..3], ["ok", "ok", "ok"], "{v:?}");
    assert!(v[3..].iter().all(|e| e.contains("nack")), "{v:?}");
}

/// The broker closes a channel when its exchange has gone (404): what was published on it
/// fails as worth retrying, and the next batch reconnects, declares the exchange again and
/// gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_channel_fails_its_batch_and_the_next_reconnects() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-pub-closed-{}", std::process::id());
    let mut p = AmqpPublisher::new(target(&url, &name, "#"));
    let first = verdicts(&publish(&mut p, &[outgoing("k", b"1", "c1", 0)]).await);
    assert_eq!(first, ["ok"]);
    let (_conn, ch) = channel(&url).await;
    ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the exchange under the publisher");
    let lost = verdicts(&publish(&mut p, &[outgoing("k", b"2", "c2", 0)]).await);
    assert!(lost[0].contains("404"), "{lost:?}");
    let again = verdicts(&publish(&mut p, &[outgoing("k", b"3", "c3", 0)]).await);
    assert_eq!(again, ["ok"], "reconnected and declared again");
    let bodies: Vec<Vec<u8>> = drain_and_delete(&ch, &name)
        .await
        .into_iter()
        .map(|d| d.data)
        .collect();
    assert_eq!(bodies, [b"1".to_vec(), b"3".to_vec()]);
}

/// A body larger than the frame size is cut into frames and arrives whole, with its
/// properties; messages on eight lanes all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_arrives_whole_with_its_properties() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-pub-large-{}", std::process::id());
    let mut p = AmqpPublisher::new(target(&url, &name, "#"));
    let big: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
    let ids: Vec<String> = (0..16).map(|n| format!("large-{n}")).collect();
    let mut items = vec![outgoing("big", &big, "the-big-one", 5)];
    items.extend(
        ids.iter()
            .enumerate()
            .map(|(n, id)| outgoing("small", b"s", id, n as u64)),
    );
    let v = verdicts(&publish(&mut p, &items).await);
    assert!(v.iter().all(|r| r == "ok"), "{v:?}");
    let (_conn, ch) = channel(&url).await;
    let got = drain_and_delete(&ch, &name).await;
    let seen = got.len();
    let big_one = got
        .iter()
        .find(|d| d.properties.message_id().as_ref().map(|s| s.as_str()) == Some("the-big-one"));
    let found = big_one.map(|d| {
        assert_eq!(d.properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            d.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("x-application/hl7-v2+er7")
        );
        d.data.clone()
    });
    assert_eq!(seen, 17);
    assert!(found == Some(big), "the 3 MiB body arrived byte for byte");
}

/// Refused credentials and an unknown virtual host are named, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_an_unknown_vhost_are_named() {
    let url = amqp_url();
    let bad_password = url.replacen("guest:guest", "guest:wrong", 1);
    let no_vhost = format!("{}/wyvern-no-such-vhost", url.trim_end_matches("/%2f"));
    for (url, expect) in [(bad_password, "ACCESS_REFUSED"), (no_vhost, "vhost")] {
        let mut p = AmqpPublisher::new(AmqpTarget {
            url,
            exchange: String::new(),
            queue: None,
        });
        let v = verdicts(&publish(&mut p, &[outgoing("q", b"x", "a", 0)]).await);
        assert!(v[0].contains(expect), "{v:?}");
    }
}
