//! `wyvern bench --amqp URL` and `wyvern bench --fhir`: the whole path — MLLP in, durable
//! inbox, outbox, out to RabbitMQ (publisher confirms, quorum queue) or to the FHIR stand-in
//! (HTTP POST per message) — measured end to end: ACK rate and latency as the sender sees
//! them, and the time until the last message has arrived.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use crate::bench::{Scenario, Target, load, messages, peak_rss_kib, start};

/// Messages in the broker's queue now.
async fn depth(conn: &Connection, queue: &str) -> anyhow::Result<u32> {
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "".into()).await;
    Ok(q.message_count())
}

pub async fn bench_amqp(
    url: &str,
    work: &Path,
    scenarios: &[Scenario],
) -> anyhow::Result<ExitCode> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot reach RabbitMQ at {url}"))?;
    println!(
        "| scenario | ACKs/s | p50 ACK | p99 ACK | end to end msgs/s (last message in the queue) | peak RSS | in queue |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut wrong_total = 0;
    for (i, s) in scenarios.iter().enumerate() {
        let queue = format!("wyvern-bench-{}-{i}", std::process::id());
        let extra = format!(
            "destinations:\n  - name: broker\n    amqp:\n      url: \"{url}\"\n      exchange: {queue}\n      routing_key: \"adt.{{MSH-9.2}}\"\n      queue: {{ name: {queue}, bind: \"adt.#\", type: quorum }}\norder_by: patient\n"
        );
        eprintln!(
            "  {}: {} messages through wyvern to RabbitMQ …",
            s.label(),
            s.messages
        );
        let server = start(Target::Wyvern, &work.join(format!("amqp-{i}")), &extra)?;
        let msgs = messages(&format!("E{i}"), s.messages);
        let started = Instant::now();
        let (ok, wrong, secs, hist) = load(server.addr.to_string(), *s, msgs).await?;
        wrong_total += wrong;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut in_queue = 0;
        while Instant::now() < deadline {
            in_queue = depth(&conn, &queue).await.unwrap_or(0);
            if in_queue as usize >= ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let e2e = started.elapsed().as_secs_f64();
        let rss = peak_rss_kib(server.child.id())
            .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        let ms = |q: f64| format!("{:.2} ms", hist.value_at_quantile(q) as f64 / 1000.0);
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {rss} | {in_queue} of {ok} |",
            s.label(),
            (ok + wrong) as f64 / secs.max(1e-9),
            ms(0.5),
            ms(0.99),
            in_queue as f64 / e2e.max(1e-9)
        );
        drop(server);
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = ch
                .exchange_delete(queue.as_str().into(), Default::default())
                .await;
        }
    }
    Ok(if wrong_total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Messages the FHIR stand-in holds now.
fn fhir_stored(addr: std::net::SocketAddr) -> u64 {
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

pub async fn bench_fhir(work: &Path, scenarios: &[Scenario]) -> anyhow::Result<ExitCode> {
    println!(
        "| scenario (to the FHIR stand-in) | ACKs/s | p50 ACK | p99 ACK | end to end msgs/s (last message stored) | peak RSS | stored |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut wrong_total = 0;
    for (i, s) in scenarios.iter().enumerate() {
        let fhir = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut stand_in = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--log",
                "warn",
                "dev",
                "fhir-server",
                "--listen",
                &fhir.to_string(),
            ])
            .spawn()
            .context("starting the FHIR stand-in")?;
        while std::net::TcpStream::connect(fhir).is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let extra = format!(
            "destinations:\n  - name: chie\n    fhir: {{ base: \"http://{fhir}/fhir\" }}\norder_by: patient\n"
        );
        eprintln!(
            "  {}: {} messages through wyvern to the FHIR stand-in …",
            s.label(),
            s.messages
        );
        let server = start(Target::Wyvern, &work.join(format!("fhir-{i}")), &extra)?;
        let msgs = messages(&format!("H{i}"), s.messages);
        let started = Instant::now();
        let (ok, wrong, secs, hist) = load(server.addr.to_string(), *s, msgs).await?;
        wrong_total += wrong;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut got = 0;
        while Instant::now() < deadline {
            got = fhir_stored(fhir);
            if got as usize >= ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let e2e = started.elapsed().as_secs_f64();
        let rss = peak_rss_kib(server.child.id())
            .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        let ms = |q: f64| format!("{:.2} ms", hist.value_at_quantile(q) as f64 / 1000.0);
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {rss} | {got} of {ok} |",
            s.label(),
            (ok + wrong) as f64 / secs.max(1e-9),
            ms(0.5),
            ms(0.99),
            got as f64 / e2e.max(1e-9)
        );
        drop(server);
        let _ = stand_in.kill();
        let _ = stand_in.wait();
    }
    Ok(if wrong_total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
