//! `wyvern bench --bridge`: a query through the bridge against asking one member directly,
//! measured in the same run. Two FHIR stand-ins (CHIE and DCR) each hold the same synthetic
//! patients (a Patient and five Conditions each, under their own ids); the engine runs with a
//! bridge in front of them.
//!
//! - The baseline is what a client does to get one patient's conditions from one record: its
//!   Patient by NHS number, then the Conditions for that id — per member; the slower member's
//!   figures are the baseline.
//! - Through the bridge it is one request (`GET /fhir/Condition?patient.identifier=…`), which
//!   asks both members that way in parallel, merges, and writes an audit record first.
//! - Latency: queries one at a time (p50, p99). Throughput: 50 callers at once (queries/s).
//!
//! `--member-latency` makes each member answer a search only after that long, as a record across
//! a network does; the bridge's own cost is then the difference.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Patients each member holds.
const PATIENTS: usize = 200;
/// Callers at once in the throughput run.
const CALLERS: usize = 50;

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn bench_bridge(
    work: &Path,
    queries: usize,
    member_latency: Duration,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        queries > 0,
        "--messages (the number of queries) must be at least 1"
    );
    let delay = format!("{}ms", member_latency.as_millis());
    let mut stops = Vec::new();
    let mut members = Vec::new();
    for name in ["chie", "dcr"] {
        let (addr, child) =
            crate::bench_e2e::fhir_stand_in_with(&["--search-delay", &delay]).await?;
        stops.push(Stop(child));
        members.push((name, addr));
    }
    let patients = patients();
    wyvern_connectors::tls::install_provider();
    let client = reqwest::Client::new();
    for (name, addr) in &members {
        let bundle = records(name, &patients);
        let r = client
            .post(format!("http://{addr}/fhir"))
            .header("Content-Type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "loading {name}: {}", r.status());
    }
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let dir = work.join("bridge");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("wyvern.yaml"),
        "version: 1\nstore:\n  path: store\n",
    )?;
    // One load tool stands for many callers: more connections from its address than the
    // default cap per peer.
    let mut yaml = format!(
        "version: 1\nserve:\n  listen: \"{listen}\"\n  max_connections_per_peer: {}\nmembers:\n",
        CALLERS * 2
    );
    for (name, addr) in &members {
        let ods = if *name == "chie" { "XCH01" } else { "XDC01" };
        yaml.push_str(&format!(
            "  - name: {name}\n    ods: {ods}\n    fhir: {{ base: \"http://{addr}/fhir\", timeout: 10s }}\n"
        ));
    }
    std::fs::write(dir.join("bridge.yaml"), yaml)?;
    let engine = std::process::Command::new(std::env::current_exe()?)
        .args(["--log", "warn", "run", "--config"])
        .arg(&dir)
        .spawn()
        .context("starting the engine")?;
    stops.push(Stop(engine));
    let started = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the bridge did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CALLERS)
        .build()?;
    // Warm the connections and check the answers once.
    for nhs in patients.iter().take(5) {
        anyhow::ensure!(
            bridged(&client, listen, nhs).await? == 10,
            "the bridge did not give both members' 5 conditions"
        );
        for (_, addr) in &members {
            anyhow::ensure!(
                direct(&client, *addr, nhs).await? == 5,
                "a member did not give 5 conditions"
            );
        }
    }
    eprintln!(
        "  {queries} queries for one of {PATIENTS} patients' conditions; members answer searches after {delay}"
    );
    println!(
        "\n| asked | p50 | p99 | queries/s, 1 caller | queries/s, {CALLERS} callers |\n|---|---:|---:|---:|---:|"
    );
    let mut slowest = Duration::ZERO;
    for (name, addr) in &members {
        let addr = *addr;
        let (one, _) = row(
            &format!("{name} directly (its Patient, then its Conditions)"),
            &client,
            &patients,
            queries,
            move |c, nhs| async move { direct(&c, addr, &nhs).await },
        )
        .await?;
        slowest = slowest.max(one.p50);
    }
    let (one, _) = row(
        "the bridge (both members, merged, audited)",
        &client,
        &patients,
        queries,
        move |c, nhs| async move { bridged(&c, listen, &nhs).await },
    )
    .await?;
    let overhead = one.p50.as_secs_f64() / slowest.as_secs_f64().max(1e-9) - 1.0;
    println!(
        "\nThe bridge's p50 ÷ the slower member's p50, same run: {:.2} (overhead {:+.0} %; target < 10 %)",
        1.0 + overhead,
        overhead * 100.0
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `PATIENTS` distinct valid NHS numbers from the test range.
fn patients() -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    (0..)
        .map(|i| wyvern_hl7::synthetic::nhs_number(i * 7 + 1))
        .filter(|n| seen.insert(n.clone()))
        .take(PATIENTS)
        .collect()
}

/// One member's records: each patient under its own ids, five conditions each.
fn records(member: &str, patients: &[String]) -> Value {
    let mut entry = Vec::new();
    for (i, nhs) in patients.iter().enumerate() {
        let pid = format!("{member}-p{i}");
        entry.push(json!({ "resource": { "resourceType": "Patient", "id": pid, "identifier": [{ "system": NHS, "value": nhs }], "name": [{ "family": "BENCH" }] }, "request": { "method": "PUT", "url": format!("Patient/{pid}") } }));
        for c in 0..5 {
            let cid = format!("{member}-c{i}-{c}");
            entry.push(json!({ "resource": { "resourceType": "Condition", "id": cid, "identifier": [{ "system": format!("https://{member}.example/condition"), "value": cid }], "subject": { "reference": format!("Patient/{pid}") }, "code": { "text": "Synthetic condition" } }, "request": { "method": "PUT", "url": format!("Condition/{cid}") } }));
        }
    }
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entry })
}

/// The searchset at `url`: its entries.
async fn searchset(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Value>> {
    let r = client.get(url).send().await?;
    anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
    let v: Value = serde_json::from_slice(&r.bytes().await?)?;
    Ok(v["entry"].as_array().cloned().unwrap_or_default())
}

/// A client asking one member: the patient by NHS number, then its conditions. How many came.
async fn direct(client: &reqwest::Client, addr: SocketAddr, nhs: &str) -> anyhow::Result<usize> {
    let patients = searchset(
        client,
        &format!("http://{addr}/fhir/Patient?identifier={NHS}|{nhs}"),
    )
    .await?;
    let ids: Vec<&str> = patients
        .iter()
        .filter_map(|e| e["resource"]["id"].as_str())
        .collect();
    let conditions = searchset(
        client,
        &format!("http://{addr}/fhir/Condition?patient={}", ids.join(",")),
    )
    .await?;
    Ok(conditions.len())
}

/// A client asking the bridge. How many conditions came.
async fn bridged(client: &reqwest::Client, addr: SocketAddr, nhs: &str) -> anyhow::Result<usize> {
    let entries = searchset(
        client,
        &format!("http://{addr}/fhir/Condition?patient.identifier={NHS}|{nhs}"),
    )
    .await?;
    Ok(entries
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .count())
}

/// One table row: `queries` asked by one caller, then by [`CALLERS`] at once; printed, and
/// returned.
async fn row<F, Fut>(
    label: &str,
    client: &reqwest::Client,
    patients: &[String],
    queries: usize,
    ask: F,
) -> anyhow::Result<(Measured, Measured)>
where
    F: Fn(reqwest::Client, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let one = run(client, patients, queries, 1, ask.clone()).await?;
    let many = run(client, patients, queries, CALLERS, ask).await?;
    println!(
        "| {label} | {:.2} ms | {:.2} ms | {:.0} | {:.0} |",
        ms(one.p50),
        ms(one.p99),
        one.rate,
        many.rate
    );
    Ok((one, many))
}

struct Measured {
    p50: Duration,
    p99: Duration,
    rate: f64,
}

/// `queries` queries, `callers` at a time, each for the next patient in turn.
async fn run<F, Fut>(
    client: &reqwest::Client,
    patients: &[String],
    queries: usize,
    callers: usize,
    ask: F,
) -> anyhow::Result<Measured>
where
    F: Fn(reqwest::Client, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let patients = Arc::new(patients.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (next, patients, client, ask) =
            (next.clone(), patients.clone(), client.clone(), ask.clone());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= queries {
                    return Ok::<_, anyhow::Error>(took);
                }
                let nhs = patients[i % patients.len()].clone();
                let t = Instant::now();
                ask(client.clone(), nhs).await?;
                took.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(queries);
    for t in tasks {
        all.extend(t.await??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Measured {
        p50: at(0.50),
        p99: at(0.99),
        rate,
    })
}
