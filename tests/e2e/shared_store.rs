//! Several nodes on one PostgreSQL (`store.shared`): each takes messages, the destination's
//! deliveries are leased to one node at a time, and when that node is killed another takes
//! its leases over once they expire. Counted against what was acknowledged: nothing lost,
//! each patient's messages in order (first arrivals), duplicates only around the takeover.
//! Three nodes behind HAProxy, as the issue's test asks: 4 senders × 10,000 through two
//! kills, a PostgreSQL restart and a node's connections dropped by the database.

use std::collections::HashSet;
use std::time::Duration;

use wyvern_testpg::PgCluster;

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack};
use crate::receiver::Receiver;

/// Node `name` of the shared store (its database sessions named after it), its route's
/// `rest` after the MLLP source.
fn node(pg: &PgCluster, name: &str, rest: &str) -> EngineProcess {
    let store = format!(
        "  shared:\n    postgres: {}?application_name={name}\n    node: {name}\n    lease: 3s\n",
        pg.url("postgres")
    );
    EngineProcess::start_with_store(None, &store, "", "", rest, &[])
}

/// A route's destination: `rx`, in each patient's order.
pub(crate) fn to_receiver(rx: &Receiver) -> String {
    format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\norder_by: patient\n",
        rx.addr
    )
}

/// Sends `ids` (patient `p` of each in its name) stop-and-wait; returns those answered AA.
pub(crate) fn send(e: &EngineProcess, ids: &[(String, u64)]) -> Vec<String> {
    let mut w = Wire::connect(e.addr);
    ids.iter()
        .filter(|(id, p)| {
            w.write(&frame(&adt(id, *p)));
            normalise_ack(&w.read_frame()).contains("MSA|AA|")
        })
        .map(|(id, _)| id.clone())
        .collect()
}

pub(crate) fn batch(node: &str, from: usize, n: usize) -> Vec<(String, u64)> {
    (from..from + n)
        .map(|i| {
            let p = (i % 7) as u64;
            (format!("P{p}-{node}{i:05}"), p)
        })
        .collect()
}

/// Messages of one patient taken by one node that first arrived out of their sending order
/// (control ids `P{patient}-{node}{n:05}`).
pub(crate) fn out_of_order(ids: &[String]) -> usize {
    crate::harness::out_of_order_by(ids, |id| &id[..id.len().saturating_sub(5)])
}

#[test]
fn two_nodes_share_the_work_and_one_takes_over_when_the_other_is_killed() {
    let pg = PgCluster::start();
    // A receiver that takes 3 ms a message, so the killed node still has deliveries to make.
    let rx = Receiver::start(Box::new(|_, _| {
        std::thread::sleep(Duration::from_millis(3));
        Some("AA")
    }));
    let rest = to_receiver(&rx);
    let mut a = node(&pg, "node-a", &rest);
    let mut b = node(&pg, "node-b", &rest);
    let mut acked = send(&a, &batch("a", 0, 150));
    acked.extend(send(&b, &batch("b", 0, 150)));
    assert_eq!(acked.len(), 300, "both nodes take messages");
    rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 300
    });

    // The node that holds the destination's partitions takes 200 more and is killed at once,
    // its deliveries still going: the other takes its leases over once they expire, and
    // delivers what the dead node acknowledged and what it takes itself meanwhile.
    let holders = pg.sql(
        "postgres",
        "SELECT DISTINCT owner FROM partitions WHERE owner IS NOT NULL",
    );
    assert_eq!(
        holders.lines().count(),
        1,
        "one node delivers a lane: {holders}"
    );
    let (holder, survivor, name) = match holders.as_str() {
        "node-a" => (&mut a, &b, "b"),
        _ => (&mut b, &a, "a"),
    };
    let dying = if name == "a" { "b" } else { "a" };
    acked.extend(send(holder, &batch(dying, 150, 200)));
    holder.kill();
    let before_kill = rx.wait_for(Duration::ZERO, |_| true).len();
    assert!(
        before_kill < 500,
        "the killed node had deliveries left ({before_kill} of 500 arrived)"
    );
    acked.extend(send(survivor, &batch(name, 150, 200)));
    assert_eq!(acked.len(), 700);
    let ids = rx.wait_for(Duration::from_secs(60), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 700
    });
    let delivered: HashSet<&String> = ids.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !delivered.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "lost {} acknowledged, among them {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(out_of_order(&ids), 0, "each patient's messages in order");
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM messages"),
        "700",
        "every message is in the shared store, once"
    );
    let holders = pg.sql(
        "postgres",
        "SELECT DISTINCT owner FROM partitions WHERE owner IS NOT NULL",
    );
    assert_eq!(
        holders,
        format!("node-{name}"),
        "the survivor holds every partition"
    );
    // The operator's view of the same (the last pass is recorded just after its deliveries
    // arrive: allow it a moment).
    let expected = [
        format!("node-{name}  wyvern"),
        "holds 16 partitions, last heard".to_string(),
        format!("e2e -> dcr: 16 partitions held by node-{name} 16; 0 pending, 0 waiting"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
            .args(["cluster", "status", "--config"])
            .arg(survivor.dir.path())
            .output()
            .expect("wyvern cluster status");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let missing: Vec<&String> = expected.iter().filter(|l| !text.contains(*l)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} not in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "shared store: {} acknowledged, {} delivered ({} duplicates), 0 lost, 0 out of order",
        acked.len(),
        ids.len(),
        ids.len() - delivered.len()
    );
}

/// A sender whose ACK went missing resends, and the load balancer takes the resend to another
/// node: it is recognised there (the same route, sender, control id and bytes already
/// committed), answered with the original's ACK and neither stored nor delivered again.
#[test]
fn a_resend_that_lands_on_another_node_gets_the_original_ack_and_is_not_delivered_twice() {
    let pg = PgCluster::start();
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = to_receiver(&rx);
    let (a, b) = (node(&pg, "node-a", &rest), node(&pg, "node-b", &rest));
    let message = frame(&adt("RESEND-1", 3));
    let mut to_a = Wire::connect(a.addr);
    to_a.write(&message);
    let original = to_a.read_frame();
    assert!(normalise_ack(&original).contains("MSA|AA|RESEND-1"));
    let mut to_b = Wire::connect(b.addr);
    to_b.write(&message);
    let again = to_b.read_frame();
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&original),
        "the resend is answered with the original's ACK"
    );
    // Other content under the same control id is another message (the routes' default,
    // control_id_reuse: accept).
    let mut other = adt("RESEND-1", 4);
    other.extend_from_slice(b"NTE|1||other content\r");
    to_b.write(&frame(&other));
    assert!(normalise_ack(&to_b.read_frame()).contains("MSA|AA|RESEND-1"));
    let ids = rx.wait_for(Duration::from_secs(20), |ids| ids.len() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        rx.ids().len(),
        2,
        "delivered once each, not the resend: {ids:?}"
    );
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM messages"),
        "2",
        "the resend is not stored as a message of its own"
    );
}

/// On the shared store `/metrics` counts what waits for a destination across the cluster,
/// not in the node's own (empty) embedded store: messages another node took count too.
#[test]
fn outbox_depth_on_the_shared_store_counts_what_every_node_took() {
    let pg = PgCluster::start();
    // A destination nobody listens on: everything waits.
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = down.local_addr().expect("addr");
    drop(down);
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{addr}\" }}\norder_by: patient\n"
    );
    let (a, b) = (node(&pg, "node-a", &rest), node(&pg, "node-b", &rest));
    assert_eq!(send(&a, &batch("a", 0, 3)).len(), 3);
    assert_eq!(send(&b, &batch("b", 0, 2)).len(), 2);
    let want = "wyvern_outbox_depth{route=\"e2e\",destination=\"dcr\"} 5";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = crate::harness::http_get(a.http, "/metrics");
        assert_eq!(status, 200);
        if text.contains(want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{want} not in node-a's /metrics:\n{}",
            text.lines()
                .filter(|l| l.starts_with("wyvern_outbox"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// HAProxy in TCP mode in front of `backends`, taking a backend out once a connect check
/// fails (every 200 ms), as a load balancer in front of a cluster would be set up.
struct Haproxy {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(backends: &[std::net::SocketAddr]) -> Haproxy {
        let dir = tempfile::tempdir().expect("dir");
        let addr = crate::harness::free_addr();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("  server n{i} {b} check inter 200ms fall 1 rise 2\n"))
            .collect();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
                 timeout client 60s\n  timeout server 60s\nfrontend mllp\n  bind {addr}\n  \
                 default_backend nodes\nbackend nodes\n  balance roundrobin\n{servers}"
            ),
        )
        .expect("write");
        let child = std::process::Command::new("/usr/sbin/haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (scripts/test-all installs it)");
        crate::harness::wait_listening(addr, Duration::from_secs(10));
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sender as a trust's system behaves: each message over its connection until it is
/// answered AA; a connection that breaks, no answer within 10 s or an AE sends it again on a
/// new one. Returns the control ids answered AA; counts them in `acked` as it goes.
fn resilient_sender(
    through: std::net::SocketAddr,
    s: usize,
    n: usize,
    acked: &std::sync::atomic::AtomicUsize,
) -> Vec<String> {
    use std::io::{Read, Write};
    let mut done = Vec::with_capacity(n);
    let mut conn: Option<(std::net::TcpStream, Vec<u8>)> = None;
    for i in 0..n {
        let p = (i % 5) as u64;
        let id = format!("S{s}P{p}-{i:05}");
        let msg = frame(&adt(&id, 10 * s as u64 + p));
        loop {
            let (stream, buf) = match conn.as_mut() {
                Some(c) => c,
                None => match std::net::TcpStream::connect(through) {
                    Ok(st) => {
                        st.set_read_timeout(Some(Duration::from_secs(10))).ok();
                        st.set_nodelay(true).ok();
                        conn.insert((st, Vec::new()))
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                },
            };
            let answer = stream.write_all(&msg).ok().and_then(|()| {
                loop {
                    if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                        let a = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 2);
                        break Some(a);
                    }
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break None,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
            match answer {
                Some(a) if a.contains("MSA|AA|") => break,
                Some(_) => std::thread::sleep(Duration::from_millis(100)), // AE: again
                None => conn = None,                                       // broken: again
            }
        }
        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        done.push(id);
    }
    done
}

/// The node holding the destination's partitions now (one, while nodes are up).
fn holder(pg: &PgCluster) -> Option<String> {
    pg.sql(
        "postgres",
        "SELECT owner FROM partitions WHERE owner IS NOT NULL AND expires_at > now() LIMIT 1",
    )
    .lines()
    .next()
    .map(str::to_string)
}

#[test]
fn three_nodes_behind_haproxy_lose_nothing_through_kills_a_database_restart_and_dropped_connections()
 {
    const SENDERS: usize = 4;
    const EACH: usize = 10_000;
    let _broker = crate::amqp::BROKER.blocking_lock();
    let amqp = crate::amqp::amqp_url();
    let queue = format!("wyvern-test-ha-{}", std::process::id());
    let pg = PgCluster::start();
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    // Each node: the same route, to an MLLP receiver and to a RabbitMQ quorum queue.
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\n  - name: events\n    amqp:\n      \
         url: \"{amqp}\"\n      exchange: {queue}\n      routing_key: adt\n      \
         queue: {{ name: {queue}, bind: adt, type: quorum }}\norder_by: patient\n",
        rx.addr
    );
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes: Vec<EngineProcess> = names.iter().map(|name| node(&pg, name, &rest)).collect();
    let lb = Haproxy::start(&nodes.iter().map(|e| e.addr).collect::<Vec<_>>());
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (acked, through) = (acked.clone(), lb.addr);
            std::thread::spawn(move || resilient_sender(through, s, EACH, &acked))
        })
        .collect();
    let total = SENDERS * EACH;
    let at = |share: usize| {
        crate::harness::wait_until(Duration::from_secs(120), || {
            acked.load(std::sync::atomic::Ordering::Relaxed) >= total * share / 100
        })
    };
    // A node holding partitions of the destinations now.
    let holder_index = || {
        let name = holder(&pg).expect("a node holds partitions");
        names.iter().position(|n| *n == name).expect("known")
    };
    at(25);
    let first = holder_index();
    nodes[first].kill();
    eprintln!("killed {} (it held partitions)", names[first]);
    at(35);
    nodes[first].restart();
    eprintln!("restarted {}", names[first]);
    at(50);
    pg.restart();
    eprintln!("PostgreSQL restarted");
    at(60);
    // Every connection a holder has to the database, dropped by the database.
    let cut = holder_index();
    let dropped = pg.sql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{}'",
            names[cut]
        ),
    );
    eprintln!("dropped {dropped} connections of {}", names[cut]);
    at(75);
    let second = holder_index();
    nodes[second].kill();
    eprintln!("killed {} (it held partitions)", names[second]);
    at(85);
    nodes[second].restart();
    eprintln!("restarted {}", names[second]);
    let mut sent: Vec<Vec<String>> = Vec::new();
    for t in senders {
        sent.push(t.join().expect("sender"));
    }
    let acked_ids: Vec<&String> = sent.iter().flatten().collect();
    assert_eq!(acked_ids.len(), total);
    let sending = started.elapsed();
    let mllp = rx.wait_for(Duration::from_secs(120), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= total
    });
    let (amqp_ids, _) =
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(crate::amqp::drain(
                &amqp,
                &queue,
                total,
                Duration::from_secs(180),
            ));
    for (destination, ids) in [("dcr (MLLP)", &mllp), ("events (AMQP)", &amqp_ids)] {
        let delivered: HashSet<&String> = ids.iter().collect();
        let lost: Vec<&&String> = acked_ids
            .iter()
            .filter(|id| !delivered.contains(**id))
            .collect();
        assert!(
            lost.is_empty(),
            "{destination}: lost {} acknowledged, among them {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        // Order: each sender's messages of each patient (`S{s}P{p}-{n}`), first arrivals.
        let out_of_order =
            crate::harness::out_of_order_by(ids, |id| id.split('-').next().unwrap_or(""));
        assert_eq!(
            out_of_order, 0,
            "{destination}: each sender's patients in order"
        );
        eprintln!(
            "shared store behind HAProxy, {destination}: {total} acknowledged in {:.1} s, {} delivered ({} duplicates), 0 lost, 0 out of order",
            sending.as_secs_f64(),
            ids.len(),
            ids.len() - delivered.len()
        );
    }
}

/// `wyvern ARGS -c DIR` run to its end: (success, stdout and stderr).
fn wyvern_on(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn"])
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run wyvern");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// On a node of a shared store, `wyvern inbox`, `dlq` and `replay` act on the cluster's
/// messages, not the node's own folder: a message node-a took is found from node-b's config;
/// a dead letter node-a made is listed from there, retried and delivered; a replay from
/// node-a sends again what was delivered.
#[test]
fn messages_dead_letters_and_replays_on_the_shared_store_are_the_clusters() {
    let pg = PgCluster::start();
    let rx = Receiver::start(Box::new(|id, n| {
        Some(if id == "DLQ-1" && n == 1 { "AR" } else { "AA" })
    }));
    let rest = to_receiver(&rx);
    let (a, b) = (node(&pg, "node-a", &rest), node(&pg, "node-b", &rest));
    let mut to_a = Wire::connect(a.addr);
    for (id, patient) in [("DLQ-1", 1), ("OK-1", 2)] {
        assert!(to_a.exchange(&adt(id, patient)).contains("MSA|AA|"));
    }
    rx.wait_for(Duration::from_secs(20), |ids| ids.len() >= 2);
    let (ok, found) = wyvern_on(b.config_dir(), &["inbox", "list", "--control-id", "OK-1"]);
    assert!(
        ok && found.contains("OK-1"),
        "node-b finds node-a's message: {found}"
    );
    let id = found
        .lines()
        .find(|l| l.contains("OK-1"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("an id")
        .to_string();
    let (ok, shown) = wyvern_on(b.config_dir(), &["inbox", "show", &id]);
    assert!(ok && shown.contains("MSA|AA|OK-1"), "{shown}");
    // A row of `dlq list`: SEQ, then the state.
    let dead_seq = |listed: &str| {
        listed.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            let seq = cols.next()?.parse::<i64>().ok()?;
            (cols.next() == Some("dead")).then(|| seq.to_string())
        })
    };
    let mut listed = String::new();
    crate::harness::wait_until(Duration::from_secs(10), || {
        listed = wyvern_on(b.config_dir(), &["dlq", "list"]).1;
        dead_seq(&listed).is_some()
    });
    let seq =
        dead_seq(&listed).unwrap_or_else(|| panic!("node-b lists node-a's dead letter: {listed}"));
    let (ok, shown) = wyvern_on(b.config_dir(), &["dlq", "show", &seq]);
    assert!(ok && shown.contains("DLQ-1"), "{shown}");
    let (ok, retried) = wyvern_on(b.config_dir(), &["dlq", "retry", &seq]);
    assert!(ok && retried.contains("1 dead letter(s) back"), "{retried}");
    rx.wait_for(Duration::from_secs(20), |ids| ids.len() >= 3);
    assert_eq!(
        rx.ids().iter().filter(|id| *id == "DLQ-1").count(),
        2,
        "retried and delivered once more"
    );
    let (_, after) = wyvern_on(b.config_dir(), &["dlq", "list"]);
    assert!(after.contains("no dead letters"), "{after}");

    let (ok, replayed) = wyvern_on(
        a.config_dir(),
        &["replay", "--route", "e2e", "--since", "1h"],
    );
    assert!(
        ok && replayed.contains("2 deliveries of route e2e queued again"),
        "{replayed}"
    );
    rx.wait_for(Duration::from_secs(20), |ids| ids.len() >= 5);
    assert_eq!(
        rx.ids().iter().filter(|id| *id == "OK-1").count(),
        2,
        "the replay sent it again: {:?}",
        rx.ids()
    );

    // One audit log for the cluster: both nodes' starts and every act above, in one chain.
    let (ok, verified) = wyvern_on(a.config_dir(), &["audit", "verify"]);
    assert!(ok && verified.contains("audit log sound"), "{verified}");
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT string_agg(action, ' ' ORDER BY seq) FROM audit"
        ),
        "engine engine search view view retry replay",
        "the cluster's audit log"
    );

    // A token made with one node's config is the cluster's: node-b's API takes it.
    let (ok, made) = wyvern_on(
        a.config_dir(),
        &[
            "api", "token", "create", "--name", "ops", "--role", "viewer",
        ],
    );
    assert!(ok, "{made}");
    let secret = made
        .lines()
        .find(|l| l.starts_with("wyv_"))
        .unwrap_or_else(|| panic!("a secret: {made}"))
        .trim()
        .to_string();
    let (code, _, body) = crate::api::call(b.http, "GET", "/api/v1/routes", Some(&secret), None);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = crate::api::call(
        b.http,
        "GET",
        "/api/v1/messages?control_id=OK-1",
        Some(&secret),
        None,
    );
    assert!(code == 200 && body.contains("OK-1"), "{code} {body}");
    let (code, _, body) = crate::api::call(b.http, "GET", "/api/v1/cluster", Some(&secret), None);
    assert!(
        code == 200
            && body.contains(r#""store":"shared""#)
            && body.contains(r#""node":"node-a""#)
            && body.contains(r#""node":"node-b""#),
        "{code} {body}"
    );
}
