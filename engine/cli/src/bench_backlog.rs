//! `wyvern bench --backlog N`: a destination that was down, then up. N messages (one patient
//! each) are acknowledged while the destination's port refuses connections; then a receiver
//! opens there and the time each tenth of the backlog takes to arrive is reported, with the
//! engine's peak RSS. Delivery as a log should drain the last 100,000 as fast as the first:
//! the claim is the ratio of the slowest tenth to the fastest, measured in the same run.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wyvern_connectors::mllp::{
    AckFuture, FrameHandler, MllpFrame, MllpListener, MllpListenerOptions,
};

use wyvern_hl7::synthetic::adt_a01;

use crate::bench::{Scenario, Target, load, peak_rss_kib, start};

/// Messages loaded per chunk, so the load tool never holds the whole backlog in memory.
const CHUNK: usize = 100_000;

/// What the receiver has seen: distinct control ids, duplicates, and when each tenth arrived.
#[derive(Default)]
struct Arrivals {
    seen: HashSet<Vec<u8>>,
    duplicates: u64,
    marks: Vec<Instant>,
}

pub async fn bench_backlog(n: usize, work: &Path) -> anyhow::Result<ExitCode> {
    let dest: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let extra = format!(
        "destinations:\n  - name: down\n    mllp: {{ connect: \"{dest}\" }}\norder_by: patient\n"
    );
    let server = start(Target::Wyvern, &work.join("backlog"), &extra)?;
    eprintln!("  loading {n} messages while the destination {dest} is down …");
    let loaded_at = Instant::now();
    let mut acked = 0;
    for first in (0..n).step_by(CHUNK) {
        let count = CHUNK.min(n - first);
        let s = Scenario {
            connections: 16,
            window: 8,
            messages: count,
        };
        let chunk: Vec<bytes::Bytes> = (first..first + count)
            .map(|i| bytes::Bytes::from(adt_a01(&format!("K{i:07}"), i as u64)))
            .collect();
        let (ok, wrong, _, _) = load(&[server.addr.to_string()], s, Arc::new(chunk), None).await?;
        anyhow::ensure!(
            wrong == 0,
            "{wrong} messages were not accepted while loading"
        );
        acked += ok;
        eprintln!("    {acked} acknowledged");
    }
    let load_secs = loaded_at.elapsed().as_secs_f64();
    let tenth = (n / 10).max(1);
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let receiver = Receiver {
        arrivals: arrivals.clone(),
        tenth,
        n,
    };
    let listener = MllpListener::bind(
        MllpListenerOptions::new("backlog-receiver", dest),
        Arc::new(receiver),
    )
    .await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let receiver = tokio::spawn(listener.run(stop.clone()));
    eprintln!("  destination up; waiting for {n} deliveries …");
    let up_at = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = arrivals.lock().map_or(0, |a| a.seen.len());
        if got >= n {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(90) {
            anyhow::bail!("delivery stalled at {got} of {n}");
        }
    }
    stop.cancel();
    let _ = receiver.await;
    let rss = peak_rss_kib(server.child.id());
    let a = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))?;
    // From the first delivery: the probe that finds the destination up comes after a pause.
    let first = a.marks.first().copied().unwrap_or(up_at);
    println!(
        "Backlog of {n} (one patient each), acknowledged in {load_secs:.0} s while the destination was down; then delivered over one MLLP connection:\n"
    );
    println!("| tenth | seconds | msgs/s |");
    println!("|---:|---:|---:|");
    let mut secs = Vec::new();
    for (i, w) in a.marks.windows(2).enumerate() {
        let s = (w[1] - w[0]).as_secs_f64();
        secs.push(s);
        println!("| {} | {s:.2} | {:.0} |", i + 1, tenth as f64 / s.max(1e-9));
    }
    let fastest = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = secs.iter().copied().fold(0.0, f64::max);
    println!(
        "\nFirst delivery {:.1} s after the destination came up; all {n} in {:.1} s after that. \
         Slowest tenth / fastest tenth: {:.2}×. \
         Duplicates: {}. Engine peak RSS: {}.",
        (first - up_at).as_secs_f64(),
        a.marks.last().map_or(0.0, |l| (*l - first).as_secs_f64()),
        slowest / fastest.max(1e-9),
        a.duplicates,
        rss.map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0)),
    );
    Ok(ExitCode::SUCCESS)
}

/// An MLLP receiver that answers AA and notes every `tenth` distinct arrival (and the last).
#[derive(Debug)]
struct Receiver {
    arrivals: Arc<Mutex<Arrivals>>,
    tenth: usize,
    n: usize,
}

impl std::fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} arrived", self.seen.len())
    }
}

impl FrameHandler for Receiver {
    async fn accept(&self, frame: MllpFrame, _peer: &wyvern_connectors::peers::Peer) -> AckFuture {
        let MllpFrame::Message(raw) = frame else {
            return Box::pin(async { None });
        };
        let id = wyvern_hl7::Message::parse(&raw)
            .map(|m| m.control_id().as_bytes().to_vec())
            .unwrap_or_default();
        if let Ok(mut a) = self.arrivals.lock() {
            if a.seen.insert(id) {
                let got = a.seen.len();
                if got % self.tenth == 1 || self.tenth == 1 || got == self.n {
                    a.marks.push(Instant::now());
                }
            } else {
                a.duplicates += 1;
            }
        }
        let ack = crate::bench_server::accept_ack(&raw);
        Box::pin(async move { Some(ack) })
    }
}
