//! `wyvern bench --amqp URL` and `wyvern bench --fhir`: the whole path — MLLP in, durable
//! inbox, outbox, out to RabbitMQ (publisher confirms, quorum queue) or to the FHIR stand-in
//! (HTTP POST per message) — measured end to end: ACK rate and latency as the sender sees
//! them, and the time until the last message has arrived.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use crate::bench::{
    POSTGRES, Scenario, Target, cpu_secs, load, messages, peak_rss_kib, pg_commits, reset_shared,
    start,
};

/// Where the messages end up, and how to count them there.
enum Far {
    Amqp { conn: Connection, queue: String },
    Fhir { addr: SocketAddr, stand_in: Child },
}

impl Far {
    async fn arrived(&self) -> u64 {
        match self {
            Far::Amqp { conn, queue } => queue_depth(conn, queue).await.unwrap_or(0),
            Far::Fhir { addr, .. } => fhir_stored(*addr),
        }
    }

    /// The process that receives at the far end, for its CPU time: RabbitMQ's `beam.smp` when
    /// it runs on this machine, or the stand-in.
    fn pid(&self) -> Option<u32> {
        match self {
            Far::Amqp { .. } => broker_pid(),
            Far::Fhir { stand_in, .. } => Some(stand_in.id()),
        }
    }

    async fn clean_up(self) {
        match self {
            Far::Amqp { conn, queue } => {
                if let Ok(ch) = conn.create_channel().await {
                    let _ = ch
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                    let _ = ch
                        .exchange_delete(queue.as_str().into(), Default::default())
                        .await;
                }
            }
            Far::Fhir { mut stand_in, .. } => {
                let _ = stand_in.kill();
                let _ = stand_in.wait();
            }
        }
    }
}

/// RabbitMQ's Erlang VM, when the broker runs on this machine (its CPU shares the cores).
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim_end() == "beam.smp").then_some(pid)
    })
}

/// CPU seconds of the engine, the far end and this process (the load tool), read together so
/// that one run's cost per message can be split between them.
#[derive(Clone, Copy)]
struct CpuSplit {
    engine: Option<f64>,
    far: Option<f64>,
    load: Option<f64>,
}

impl CpuSplit {
    fn now(engine: Option<u32>, far: Option<u32>) -> CpuSplit {
        CpuSplit {
            engine: engine.and_then(cpu_secs),
            far: far.and_then(cpu_secs),
            load: cpu_secs(std::process::id()),
        }
    }

    /// Each part's CPU per message since `before`, as `engine / far end / load tool`.
    fn per_message(self, before: CpuSplit, messages: u64) -> String {
        let each = |b: Option<f64>, a: Option<f64>| match (b, a) {
            (Some(b), Some(a)) if messages > 0 => format!("{:.0}", (a - b) * 1e6 / messages as f64),
            _ => "-".into(),
        };
        format!(
            "{} / {} / {} µs",
            each(before.engine, self.engine),
            each(before.far, self.far),
            each(before.load, self.load)
        )
    }
}

async fn queue_depth(conn: &Connection, queue: &str) -> anyhow::Result<u64> {
    let ch = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    let _ = ch.close(200, "".into()).await;
    Ok(u64::from(q.message_count()))
}

/// Messages the FHIR stand-in holds now.
fn fhir_stored(addr: SocketAddr) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.write_all(b"GET /_stats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["stored"].as_u64())
        .unwrap_or(0)
}

/// The stores each scenario runs on: the embedded one, and PostgreSQL when `--postgres` names
/// a database (emptied before each run).
fn stores() -> Vec<Target> {
    let mut stores = vec![Target::Wyvern];
    if POSTGRES.get().is_some() {
        stores.push(Target::WyvernShared);
    }
    stores
}

/// A scenario's row label on `store`.
fn labelled(s: &Scenario, store: Target) -> String {
    match store {
        Target::WyvernShared => format!("{}, on PostgreSQL", s.label()),
        _ => s.label(),
    }
}

/// Sends a scenario through Wyvern on `store` (route tail `extra`) and waits for everything
/// at `far`. Returns whether every ACK was right, and the end-to-end rate.
async fn measure(
    i: usize,
    s: &Scenario,
    store: Target,
    dir: &Path,
    extra: &str,
    far: &Far,
) -> anyhow::Result<(bool, f64)> {
    if store == Target::WyvernShared
        && let Some(url) = POSTGRES.get()
    {
        reset_shared(url).await?;
    }
    let server = start(store, dir, extra)?;
    let commits_before = if store == Target::WyvernShared {
        pg_commits().await
    } else {
        None
    };
    // The far end's process is found once: both readings must be of the same one.
    let far_pid = far.pid();
    let cpu_before = CpuSplit::now(Some(server.child.id()), far_pid);
    let started = Instant::now();
    let (ok, wrong, secs, hist) = load(
        &[server.addr.to_string()],
        *s,
        messages(&format!("E{i}"), s.messages),
        None,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut arrived = 0;
    while Instant::now() < deadline {
        arrived = far.arrived().await;
        if arrived as usize >= ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e2e = started.elapsed().as_secs_f64();
    // The engine's CPU for the whole path (ingest, store, delivery), the far end's and the
    // load tool's, per message arrived: what the shared cores were spent on.
    let cpu = CpuSplit::now(Some(server.child.id()), far_pid).per_message(cpu_before, arrived);
    let rss = peak_rss_kib(server.child.id())
        .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    // PostgreSQL's side: its commits per second over the run (the group commits and every
    // delivery pass's settle), since its CPU is not the engine's.
    let commits = match (commits_before, pg_commits().await) {
        (Some(a), Some(b)) => format!(
            ", {:.0} PostgreSQL commits/s",
            (b - a) as f64 / e2e.max(1e-9)
        ),
        _ => String::new(),
    };
    let ms = |q: f64| format!("{:.2} ms", hist.value_at_quantile(q) as f64 / 1000.0);
    println!(
        "| {}{commits} | {:.0} | {} | {} | {:.0} | {cpu} | {rss} | {arrived} of {ok} |",
        labelled(s, store),
        (ok + wrong) as f64 / secs.max(1e-9),
        ms(0.5),
        ms(0.99),
        arrived as f64 / e2e.max(1e-9)
    );
    Ok((wrong == 0, arrived as f64 / e2e.max(1e-9)))
}

fn header(to: &str) {
    println!(
        "| scenario (to {to}) | ACKs/s | p50 ACK | p99 ACK | end to end msgs/s (until the last arrived) | CPU/msg: engine / {to} / load tool | peak RSS | arrived |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
}

/// The binding of the benchmark's queue to its topic exchange: the floor's and the route's, so
/// both ask the broker for the same routing.
const BIND: &str = "adt.#";

/// The broker's own ceiling on this machine, measured in the same run: `n` 1 KB messages
/// published with the engine's own publisher (two connections of eight confirm-mode channels,
/// batches of 2,048, the next batch on the wire while the last one's confirms come in: what a
/// delivery worker does) through a topic exchange into a quorum queue bound to it, as the
/// benchmark's route asks the broker to do (routing by topic costs the broker about a fifth
/// more per message than the default exchange: a floor without it would not be the same
/// work). No MLLP, no store.
async fn broker_floor(url: &str, n: usize) -> anyhow::Result<(f64, String)> {
    use wyvern_connectors::amqp::{AmqpPublisher, AmqpTarget, Outgoing};
    const PUBLISHERS: usize = 2;
    const BATCH: usize = 2048;
    let queue = format!("wyvern-bench-floor-{}", std::process::id());
    // Declared once, before publishing: a quorum queue nacks what arrives before its leader
    // is elected, which two publishers declaring it at once would race.
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
        .await?;
    ch.exchange_declare(
        queue.as_str().into(),
        lapin::ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        queue.as_str().into(),
        BIND.into(),
        lapin::options::QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let target = AmqpTarget {
        url: url.to_string(),
        exchange: queue.clone(),
        queue: None,
    };
    let body = messages("FLOOR", 1)[0].to_vec();
    let ids: Vec<String> = (0..BATCH).map(|i| format!("floor-{i}")).collect();
    let per = n / PUBLISHERS;
    let broker = broker_pid();
    let cpu_before = CpuSplit::now(None, broker);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let (target, body, ids) = (target.clone(), body.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut publisher = AmqpPublisher::new(target);
            let mut left = per;
            let mut in_flight = None;
            while left > 0 || in_flight.is_some() {
                let next = if left > 0 {
                    let size = left.min(BATCH);
                    left -= size;
                    let batch: Vec<Outgoing<'_>> = ids[..size]
                        .iter()
                        .enumerate()
                        .map(|(i, id)| Outgoing {
                            // What the route's `adt.{MSH-9.2}` makes of the bench's A01s.
                            routing_key: "adt.A01".into(),
                            body: &body,
                            message_id: id,
                            content_type: "x-application/hl7-v2+er7",
                            lane: i as u64,
                        })
                        .collect();
                    Some(publisher.start_many(&batch).await)
                } else {
                    None
                };
                if let Some(previous) = std::mem::replace(&mut in_flight, next) {
                    let results = previous.confirmed().await;
                    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                        anyhow::bail!("the broker floor could not publish: {e}");
                    }
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = (per * PUBLISHERS) as f64 / started.elapsed().as_secs_f64();
    let cpu = CpuSplit::now(None, broker).per_message(cpu_before, (per * PUBLISHERS) as u64);
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(queue.as_str().into(), Default::default())
        .await;
    Ok((rate, cpu))
}

pub async fn bench_amqp(
    url: &str,
    work: &Path,
    scenarios: &[Scenario],
    rounds: usize,
) -> anyhow::Result<ExitCode> {
    let n = scenarios.first().map_or(20_000, |s| s.messages);
    let floor = Floor {
        name: "Broker floor",
        how: "the engine's publisher, 2 connections × 8 channels, 1 KB through a topic exchange to a quorum queue (as the route) in batches of 2,048 (the next on the wire while the last is confirmed), no MLLP, no store",
    };
    over_rounds(
        scenarios,
        rounds,
        floor,
        |_| broker_floor(url, n),
        |round| {
            run_scenarios("RabbitMQ", work, scenarios, move |i| async move {
                let conn = Connection::connect(url, ConnectionProperties::default())
                    .await
                    .with_context(|| format!("cannot reach RabbitMQ at {url}"))?;
                let queue = format!("wyvern-bench-{}-{round}-{i}", std::process::id());
                let extra = format!(
                    "destinations:\n  - name: broker\n    amqp:\n      url: \"{url}\"\n      exchange: {queue}\n      routing_key: \"adt.{{MSH-9.2}}\"\n      queue: {{ name: {queue}, bind: \"{BIND}\", type: quorum }}\norder_by: patient\n"
                );
                Ok((Far::Amqp { conn, queue }, extra))
            })
        },
    )
    .await
}

/// A same-run baseline: what it is called and how it is measured.
#[derive(Clone, Copy)]
struct Floor {
    name: &'static str,
    how: &'static str,
}

/// Runs `rounds` rounds, each measuring the floor (`measure_floor`) and then every scenario
/// (`run_round`), and prints each scenario's median ratio to its round's floor.
async fn over_rounds<F, FF, R, RF>(
    scenarios: &[Scenario],
    rounds: usize,
    floor: Floor,
    mut measure_floor: F,
    mut run_round: R,
) -> anyhow::Result<ExitCode>
where
    F: FnMut(usize) -> FF,
    FF: std::future::Future<Output = anyhow::Result<(f64, String)>>,
    R: FnMut(usize) -> RF,
    RF: std::future::Future<Output = anyhow::Result<Option<Vec<(String, f64)>>>>,
{
    let n = scenarios.first().map_or(20_000, |s| s.messages);
    let mut summary = Summary::default();
    for round in 1..=rounds.max(1) {
        eprintln!("  round {round}: {}, {n} messages …", floor.name);
        let (rate, cpu) = measure_floor(round).await?;
        println!(
            "Round {round}. {} (same run): {rate:.0} msgs/s, CPU/msg engine (none) / far end / load tool (the floor's client) {cpu} — {}.\n",
            floor.name, floor.how
        );
        let rates = run_round(round).await?;
        summary.add(rate, rates);
    }
    Ok(summary.print(&floor.name.to_lowercase()))
}

/// Each scenario's end-to-end rate ÷ its round's floor, over the rounds.
#[derive(Default)]
struct Summary {
    all_right: bool,
    rounds: usize,
    ratios: Vec<(String, Vec<f64>)>,
}

impl Summary {
    fn add(&mut self, floor: f64, rates: Option<Vec<(String, f64)>>) {
        self.all_right = (self.rounds == 0 || self.all_right) && rates.is_some();
        self.rounds += 1;
        for (label, rate) in rates.unwrap_or_default() {
            let ratio = rate / floor.max(1e-9);
            match self.ratios.iter_mut().find(|(l, _)| *l == label) {
                Some((_, all)) => all.push(ratio),
                None => self.ratios.push((label, vec![ratio])),
            }
        }
    }

    /// Prints the median ratio of each scenario (the claim; this machine drifts between runs)
    /// with every round's, and says whether every ACK was right.
    fn print(mut self, floor: &str) -> ExitCode {
        println!(
            "\nSame-run ratios (end to end ÷ {floor}), over {} round(s):",
            self.rounds
        );
        for (label, all) in &mut self.ratios {
            let each: Vec<String> = all.iter().map(|r| format!("{r:.2}")).collect();
            all.sort_by(f64::total_cmp);
            println!(
                "- {label}: median {:.2} (rounds: {})",
                all[all.len() / 2],
                each.join(", ")
            );
        }
        if self.all_right {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Runs each scenario through Wyvern to `to`, on each of [`stores`]: `far_for(i)` sets up the
/// far end of run `i` and returns it with the route's destination YAML. Returns each run's
/// label and end-to-end rate, or `None` if any ACK was wrong.
async fn run_scenarios<F, Fut>(
    to: &str,
    work: &Path,
    scenarios: &[Scenario],
    mut far_for: F,
) -> anyhow::Result<Option<Vec<(String, f64)>>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Far, String)>>,
{
    header(to);
    let (mut all_right, mut rates) = (true, Vec::with_capacity(scenarios.len()));
    let runs = scenarios
        .iter()
        .flat_map(|s| stores().into_iter().map(move |store| (s, store)));
    for (i, (s, store)) in runs.enumerate() {
        let (far, extra) = far_for(i).await?;
        eprintln!(
            "  {}: {} messages through wyvern to {to} …",
            labelled(s, store),
            s.messages
        );
        // A store of its own each time: a round that reused one would be all resends.
        let dir = tempfile::tempdir_in(work)?;
        let (right, rate) = measure(i, s, store, dir.path(), &extra, &far).await?;
        all_right &= right;
        rates.push((labelled(s, store), rate));
        far.clean_up().await;
    }
    println!();
    Ok(all_right.then_some(rates))
}

/// Starts the FHIR stand-in (`wyvern dev fhir-server`) on a free port.
pub(crate) async fn fhir_stand_in() -> anyhow::Result<(SocketAddr, Child)> {
    fhir_stand_in_with(&[]).await
}

/// As [`fhir_stand_in`], with more of `wyvern dev fhir-server`'s options.
pub(crate) async fn fhir_stand_in_with(extra: &[&str]) -> anyhow::Result<(SocketAddr, Child)> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let stand_in = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--log",
            "warn",
            "dev",
            "fhir-server",
            "--listen",
            &addr.to_string(),
        ])
        .args(extra)
        .spawn()
        .context("starting the FHIR stand-in")?;
    while std::net::TcpStream::connect(addr).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((addr, stand_in))
}

/// The FHIR server's own ceiling in the same run: `n` messages POSTed straight to the stand-in
/// as `Binary` by the engine's own client, 16 at a time (what the worker does), no MLLP, no
/// store.
async fn fhir_floor(n: usize) -> anyhow::Result<(f64, String)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wyvern_connectors::fhir::{FhirAuthSpec, FhirClient, FhirOutcome};
    let (addr, mut stand_in) = fhir_stand_in().await?;
    let client = FhirClient::new(
        &format!("http://{addr}/fhir"),
        FhirAuthSpec::None,
        Duration::from_secs(30),
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let msgs = messages("FLOOR", n);
    let (next, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let cpu_before = CpuSplit::now(None, Some(stand_in.id()));
    let started = Instant::now();
    let mut posters = Vec::new();
    for _ in 0..16 {
        let (client, msgs, next, done) = (client.clone(), msgs.clone(), next.clone(), done.clone());
        posters.push(tokio::spawn(async move {
            while let Some(m) = msgs.get(next.fetch_add(1, Ordering::Relaxed)) {
                if let Ok((interaction, body)) = wyvern_runtime::delivery::fhir_request(m)
                    && matches!(
                        client.send(&interaction, body).await,
                        FhirOutcome::Stored(_)
                    )
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for p in posters {
        p.await?;
    }
    let stored = done.load(Ordering::Relaxed);
    let rate = stored as f64 / started.elapsed().as_secs_f64();
    let cpu = CpuSplit::now(None, Some(stand_in.id())).per_message(cpu_before, stored as u64);
    let _ = stand_in.kill();
    let _ = stand_in.wait();
    anyhow::ensure!(stored == n, "the stand-in stored {stored} of {n}");
    Ok((rate, cpu))
}

pub async fn bench_fhir(
    work: &Path,
    scenarios: &[Scenario],
    rounds: usize,
) -> anyhow::Result<ExitCode> {
    let n = scenarios.first().map_or(20_000, |s| s.messages);
    let floor = Floor {
        name: "FHIR floor",
        how: "the engine's FHIR client POSTing each message as a Binary straight to the stand-in, 16 at a time, no MLLP, no store",
    };
    over_rounds(
        scenarios,
        rounds,
        floor,
        |_| fhir_floor(n),
        |_| {
            run_scenarios("the FHIR stand-in", work, scenarios, |_| async {
                let (addr, stand_in) = fhir_stand_in().await?;
                let extra = format!(
                    "destinations:\n  - name: chie\n    fhir: {{ base: \"http://{addr}/fhir\" }}\norder_by: patient\n"
                );
                Ok((Far::Fhir { addr, stand_in }, extra))
            })
        },
    )
    .await
}
