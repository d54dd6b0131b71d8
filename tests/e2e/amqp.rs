//! Delivery to RabbitMQ, the real broker (scripts/test-all starts it): publisher confirms,
//! persistent messages, a quorum queue; the whole broker node stopped and started again
//! mid-stream; an AMQP source killed mid-queue.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack};

/// The broker is shared: tests that stop it must not overlap with others using it.
pub(crate) static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn amqp_url() -> String {
    let url = std::env::var("WYVERN_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    assert!(
        std::net::TcpStream::connect("127.0.0.1:5672").is_ok(),
        "RabbitMQ is not running on 127.0.0.1:5672: scripts/test-all installs and starts it (or run `rabbitmq-server -detached`)"
    );
    url
}

/// Declares `queue` as a durable quorum queue (idempotent with the same arguments).
async fn declare_quorum(ch: &lapin::Channel, queue: &str) {
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        queue.into(),
        lapin::options::QueueDeclareOptions::durable(),
        args,
    )
    .await
    .expect("queue_declare");
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (install rabbitmq-server)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes every message from `queue` until `want` distinct control ids were seen or `limit`
/// passed; returns (control ids in order, routing keys seen).
pub(crate) async fn drain(
    url: &str,
    queue: &str,
    want: usize,
    limit: Duration,
) -> (Vec<String>, HashSet<String>) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // The engine declares the queue when it first publishes; declaring it here too (same
    // arguments, so idempotent) means draining can start before that without an error.
    declare_quorum(&ch, queue).await;
    let (mut ids, mut keys, mut distinct) = (Vec::new(), HashSet::new(), HashSet::new());
    let deadline = Instant::now() + limit;
    // A consumer, the broker acknowledging as it sends: tens of thousands drain in a second
    // or two, where a `basic.get` round trip each took tens of seconds.
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "wyvern-test-drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("basic_consume");
    while distinct.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(delivery)) = tokio::time::timeout(left, consumer.next()).await else {
            break;
        };
        let d = delivery.expect("delivery");
        let msg = wyvern_hl7::Message::parse(&d.data).expect("HL7 in the queue");
        let id = msg.control_id().into_owned();
        distinct.insert(id.clone());
        ids.push(id);
        keys.insert(d.routing_key.to_string());
    }
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    (ids, keys)
}

fn route(url: &str, name: &str) -> String {
    format!(
        "destinations:\n  - name: events\n    amqp:\n      url: \"{url}\"\n      exchange: {name}\n      routing_key: \"adt.{{MSH-9.2}}\"\n      queue: {{ name: {name}, bind: \"adt.#\", type: quorum }}\n\
         order_by: sender\nretry: {{ backoff: 100ms..1s }}\n"
    )
}

fn send(e: &EngineProcess, from: usize, to: usize) {
    let mut w = Wire::connect(e.addr);
    for i in from..to {
        w.write(&frame(&adt(&format!("Q{i:06}"), i as u64)));
        assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_with_confirms_to_a_quorum_queue() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-{}", std::process::id());
    let e = EngineProcess::start_route("", &route(&url, &name));
    let total = 1_000;
    tokio::task::spawn_blocking({
        let e_addr = e.addr;
        move || {
            let mut w = Wire::connect(e_addr);
            for i in 0..total {
                w.write(&frame(&adt(&format!("Q{i:06}"), i as u64)));
                assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
            }
        }
    })
    .await
    .expect("sender");
    let (ids, keys) = drain(&url, &name, total, Duration::from_secs(60)).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    println!(
        "amqp test: {total} ACKed, {} consumed ({} distinct), lost = {}",
        ids.len(),
        distinct.len(),
        total - distinct.len()
    );
    assert_eq!(distinct.len(), total);
    assert_eq!(keys, HashSet::from(["adt.A01".to_string()]));
    let in_order = ids.windows(2).all(|w| w[0] < w[1]);
    assert!(in_order, "one sender's messages arrive in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_and_started_mid_stream_loses_nothing() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-restart-{}", std::process::id());
    let e = EngineProcess::start_route("", &route(&url, &name));
    let total = 600;
    let addr = e.addr;
    let e = std::sync::Arc::new(e);
    // First third with the broker up, the middle third while it is down, the rest after.
    let e1 = e.clone();
    tokio::task::spawn_blocking(move || send(&e1, 0, 200))
        .await
        .expect("send");
    // The whole node goes down (not just the app): the engine's connection is refused until
    // a fresh broker process has started and recovered its queues from disk.
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop"]))
        .await
        .expect("stop");
    let down_at = Instant::now();
    let e2 = e.clone();
    tokio::task::spawn_blocking(move || send(&e2, 200, 400))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| {
        let started = std::process::Command::new("rabbitmq-server")
            .arg("-detached")
            .status()
            .expect("rabbitmq-server");
        assert!(started.success());
        // The node registers a moment after -detached returns; until then await_startup
        // fails at once rather than waiting.
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect("127.0.0.1:5672").is_err() {
            assert!(
                Instant::now() < deadline,
                "RabbitMQ did not come back within 90 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        rabbitmqctl(&["await_startup"]);
    })
    .await
    .expect("start");
    let down_for = down_at.elapsed();
    let e3 = e.clone();
    tokio::task::spawn_blocking(move || send(&e3, 400, 600))
        .await
        .expect("send");
    let (ids, _) = drain(&url, &name, total, Duration::from_secs(90)).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    let lost = total - distinct.len();
    println!(
        "amqp restart test: {total} ACKed by {addr}, RabbitMQ node stopped and restarted mid-stream (down {down_for:.1?}); consumed {} ({} distinct): lost = {lost}, duplicated = {}",
        ids.len(),
        distinct.len(),
        ids.len() - distinct.len()
    );
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_20000_to_rabbitmq_loses_nothing() {
    use crate::crash::{PER_SENDER, SENDERS, sender};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-kill-{}", std::process::id());
    let mut engine = EngineProcess::start_route("", &route(&url, &name));
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let ids: Vec<String> = (0..PER_SENDER).map(|i| format!("K{s}-{i:05}")).collect();
        tasks.push(tokio::spawn(sender(engine.addr, ids, acked_total.clone())));
    }
    let total = SENDERS * PER_SENDER;
    while acked_total.load(Ordering::Relaxed) < total * 3 / 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = acked_total.load(Ordering::Relaxed);
    engine.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.restart();
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.expect("sender"));
    }
    let (ids, _) = drain(&url, &name, total, Duration::from_secs(180)).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    let lost = acked.iter().filter(|id| !distinct.contains(id)).count();
    // Per sender, first arrivals in the order sent.
    let mut out_of_order = 0;
    for s in 0..SENDERS {
        let prefix = format!("K{s}-");
        let mut seen = HashSet::new();
        let firsts: Vec<&String> = ids
            .iter()
            .filter(|i| i.starts_with(&prefix) && seen.insert(*i))
            .collect();
        out_of_order += firsts.windows(2).filter(|w| w[0] > w[1]).count();
    }
    println!(
        "amqp kill test: {total} messages from {SENDERS} senders, SIGKILL after {at_kill} ACKs; ACKed {} distinct; in the queue {} ({} distinct): lost = {lost}, duplicated = {}, out of order = {out_of_order}",
        acked.len(),
        ids.len(),
        distinct.len(),
        ids.len() - distinct.len()
    );
    assert_eq!(acked.len(), total);
    assert_eq!(lost, 0);
}

/// Publishes `ids` (one ADT each) to `queue` (declared quorum) with confirms.
async fn publish(url: &str, queue: &str, ids: &[String]) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    declare_quorum(&ch, queue).await;
    for chunk in ids.chunks(500) {
        let mut confirms = Vec::new();
        for (n, id) in chunk.iter().enumerate() {
            let body = adt(id, n as u64 % 8);
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    lapin::options::BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish"),
            );
        }
        for c in confirms {
            assert!(c.await.expect("confirm").is_ack());
        }
    }
    let _ = conn.close(0, "done".into()).await;
}

/// Messages still in `queue` (ready or unacknowledged are both "not yet taken").
async fn queue_depth(url: &str, queue: &str) -> u32 {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("queue exists");
    let _ = conn.close(0, "done".into()).await;
    q.message_count()
}

/// Control ids of the messages delivered to files in `dir`.
fn delivered_ids(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|f| f.file_name().to_string_lossy().ends_with(".hl7"))
                .filter_map(|f| std::fs::read(f.path()).ok())
                .filter_map(|b| {
                    wyvern_hl7::Message::parse(&b)
                        .ok()
                        .map(|m| m.control_id().into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_source_acks_after_the_commit_and_a_kill_loses_nothing() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let queue = format!("wyvern-test-source-{}", std::process::id());
    let total = 3_000;
    let ids: Vec<String> = (0..total).map(|i| format!("S{i:05}")).collect();
    publish(&url, &queue, &ids).await;
    let mut engine = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: from-queue\nsource:\n  amqp: {{ url: \"{url}\", queue: {queue}, prefetch: 64, declare: quorum }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n"
    ));
    let out = engine.dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered_ids(&out).len() < total / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = delivered_ids(&out).len();
    engine.kill();
    engine.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: HashSet<String> = delivered_ids(&out).into_iter().collect();
        if got.len() >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The queue drains once every message is committed and settled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = queue_depth(&url, &queue).await;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = queue_depth(&url, &queue).await;
    }
    let delivered = delivered_ids(&out);
    let distinct: HashSet<&String> = delivered.iter().collect();
    let lost = ids.iter().filter(|i| !distinct.contains(i)).count();
    println!(
        "amqp source test: {total} in the queue, SIGKILL after {at_kill} delivered, restart; delivered {} ({} distinct): lost = {lost}, duplicated = {}, left in the queue = {left}",
        delivered.len(),
        distinct.len(),
        delivered.len() - distinct.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(left, 0, "every message settled with the broker");
    let ch_url = url.clone();
    let _ = tokio::spawn(async move {
        if let Ok(c) = Connection::connect(&ch_url, ConnectionProperties::default()).await
            && let Ok(ch) = c.create_channel().await
        {
            let _ = ch
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    })
    .await;
}

/// Issue 11: a message whose routing key is over AMQP's 255-byte limit (a 300-character MSH-4
/// in `oru.{MSH-4}`) stopped the route's delivery worker for ever. Now it is dead-lettered with
/// the reason, and the messages after it are published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_routing_key_is_dead_lettered_and_the_route_goes_on() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-longkey-{}", std::process::id());
    let rest = format!(
        "destinations:\n  - name: events\n    amqp:\n      url: \"{url}\"\n      exchange: {name}\n      routing_key: \"adt.{{MSH-4}}\"\n      queue: {{ name: {name}, bind: \"adt.#\", type: quorum }}\n\
         order_by: sender\nretry: {{ backoff: 100ms..1s }}\n"
    );
    let e = EngineProcess::start_route("", &rest);
    let long = String::from_utf8(adt("LONG0001", 0)).unwrap().replacen(
        "|RX1|",
        &format!("|{}|", "F".repeat(300)),
        1,
    );
    let total = 50;
    let addr = e.addr;
    tokio::task::spawn_blocking(move || {
        let mut w = Wire::connect(addr);
        w.write(&frame(long.as_bytes()));
        assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
        for i in 0..total {
            w.write(&frame(&adt(&format!("K{i:06}"), i as u64)));
            assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
        }
    })
    .await
    .expect("sender");
    let (ids, keys) = drain(&url, &name, total, Duration::from_secs(30)).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        total,
        "every message after the long one is published; engine log:\n{}",
        e.log()
    );
    assert_eq!(keys, HashSet::from(["adt.RX1".to_string()]));
    let store = e.store_dir();
    let mut dead = Vec::new();
    crate::harness::wait_until(Duration::from_secs(10), || {
        dead = wyvern_store::Outbox::open(&store)
            .and_then(|o| o.dead_letters(None, None, 10))
            .unwrap_or_default();
        !dead.is_empty()
    });
    assert_eq!(dead.len(), 1, "the long one is dead-lettered: {dead:?}");
    let why = dead[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("routing key") && why.contains("255"), "{why}");
}

/// Issue 16: with a batch of publishes on the wire, a later message of a key can be confirmed
/// while an earlier one of the same key failed (here: unroutable until its binding exists).
/// The later one must then go again after the earlier one, so the receiver's last copy of
/// each is in the key's order — before, it was recorded as delivered and the queue ended with
/// K3 before K2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_confirmed_after_an_earlier_one_of_its_key_failed_goes_again_after_it() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-order-{}", std::process::id());
    let rest = format!(
        "destinations:\n  - name: events\n    amqp:\n      url: \"{url}\"\n      exchange: {name}\n      routing_key: \"adt.{{MSH-9.2}}\"\n      queue: {{ name: {name}, bind: \"adt.A01\", type: quorum }}\n\
         order_by: sender\nretry: {{ backoff: 100ms..1s }}\n"
    );
    let e = EngineProcess::start_route("", &rest);
    let a08 = |id: &str, n| {
        String::from_utf8(adt(id, n))
            .expect("text")
            .replace("ADT^A01^ADT_A01", "ADT^A08^ADT_A01")
            .into_bytes()
    };
    let addr = e.addr;
    tokio::task::spawn_blocking(move || {
        let mut w = Wire::connect(addr);
        for m in [adt("K1", 1), a08("K2", 2), adt("K3", 3)] {
            w.write(&frame(&m));
            assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
        }
    })
    .await
    .expect("sender");
    // K2 (an A08) has nowhere to go until A08s are bound too.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_bind(
        name.as_str().into(),
        name.as_str().into(),
        "adt.A08".into(),
        lapin::options::QueueBindOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("bind A08");
    let mut ids: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = |ids: &[String], id: &str| ids.iter().rposition(|i| i == id);
    while Instant::now() < deadline {
        match ch
            .basic_get(name.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            Some(m) => {
                let msg = wyvern_hl7::Message::parse(&m.delivery.data).expect("HL7");
                ids.push(msg.control_id().into_owned());
                m.delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
            }
            None if last(&ids, "K2").is_some() && last(&ids, "K3") > last(&ids, "K2") => break,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    let (k1, k2, k3) = (last(&ids, "K1"), last(&ids, "K2"), last(&ids, "K3"));
    assert!(
        k1.is_some() && k2.is_some() && k1 < k2 && k2 < k3,
        "the last copy of each is in the key's order; the queue got {ids:?}; engine log:\n{}",
        e.log()
    );
}

/// Issue 11: a message a queue source would not accept (here a control id refused by
/// `control_id_reuse: reject`; a failing plugin is the same AE) was requeued every 2 s for
/// ever. Now it is parked after a bounded number of attempts — acked, and kept in the inbox
/// with the reason — and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_on_a_queue_source_is_parked_not_requeued_for_ever() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let queue = format!("wyvern-test-poison-{}", std::process::id());
    // The same control id twice with different content, then another message.
    publish(&url, &queue, &["PZ1".into(), "PZ1".into(), "PZ2".into()]).await;
    let engine = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: from-queue\nsource:\n  amqp: {{ url: \"{url}\", queue: {queue}, prefetch: 8, declare: quorum }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\ncontrol_id_reuse: reject\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(40);
    while !engine.log().contains("parked") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        engine.log().contains("parked"),
        "parked within 40 s; log:\n{}",
        engine.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queue_depth(&url, &queue).await, 0, "the queue drained");
    let mut ids = delivered_ids(&engine.dir.path().join("out"));
    ids.sort();
    assert_eq!(ids, ["PZ1", "PZ2"]);
    let reader = engine.store_with(3);
    let conflicts = reader
        .list(&wyvern_store::InboxQuery {
            status: Some(wyvern_store::InboxStatus::Conflict),
            limit: 10,
            ..Default::default()
        })
        .expect("list");
    assert!(
        !conflicts.is_empty(),
        "each attempt is kept with its reason"
    );
}

/// Issue 11 item 6: the content type was dropped between the steps and the outbox: FHIR went to
/// AMQP labelled `application/hl7-v2` and to files named `.hl7`. Now every outbox row carries
/// its content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_is_labelled_fhir_on_amqp_and_in_files() {
    let _broker = BROKER.lock().await;
    let url = amqp_url();
    let name = format!("wyvern-test-fhirct-{}", std::process::id());
    let listen = crate::harness::free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\" }}\n\
         destinations:\n  - name: events\n    amqp:\n      url: \"{url}\"\n      exchange: {name}\n      routing_key: fhir.patient\n      queue: {{ name: {name}, bind: \"fhir.#\", type: quorum }}\n\
         \x20 - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n"
    ));
    crate::harness::wait_listening(listen, Duration::from_secs(20));
    let body = r#"{"resourceType":"Patient","name":[{"family":"CONTENTTYPE"}]}"#;
    let req = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: t\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (code, answer) = crate::harness::http_raw(listen, req.as_bytes());
    assert_eq!(code, 201, "{answer}");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    declare_quorum(&ch, &name).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        got = ch
            .basic_get(name.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic_get");
        if got.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let m = got.expect("the Patient reached the queue");
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(
        m.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/fhir+json")
    );
    let out = e.dir.path().join("out");
    let names: Vec<String> = std::fs::read_dir(&out)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(names.len() == 1 && names[0].ends_with(".json"), "{names:?}");
}
