//! `wyvern send`: an MLLP client for people and scripts, and the exchange loop the load tool
//! reuses. Every answer's MSA-2 is checked against the MSH-10 that was sent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use tokio::sync::{Semaphore, mpsc};
use wyvern_connectors::mllp::MllpClient;
use wyvern_hl7::{AckCode, Message};

use crate::input::read_inputs;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Where to send, HOST:PORT.
    #[arg(long, short, default_value = "127.0.0.1:2575", env = "WYVERN_SEND_TO")]
    pub to: String,
    /// Messages in flight on the connection; 1 waits for each ACK before the next.
    #[arg(long, short, default_value_t = 1)]
    pub window: usize,
    /// How long to wait for each ACK.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Send each input file as one frame, byte for byte (no splitting, no CR conversion).
    #[arg(long)]
    pub raw: bool,
    /// Print only the summary.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every ACK in full.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    /// Files, folders, or - for stdin (the default).
    pub inputs: Vec<PathBuf>,
}

/// What came back for one message: its ACK, `None` when the message asked for none that
/// came (MSH-15 NE; ER or SU when the outcome was not the one it asked about), or why not.
#[derive(Debug)]
pub struct Answer {
    pub index: usize,
    pub latency: Duration,
    pub result: Result<Option<Bytes>, String>,
}

/// Which accept ACKs a message asks for (MSH-15, enhanced mode; blank is original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAsked {
    Always,
    /// ER (only on error) or SU (only on success): one may or may not come.
    Sometimes,
    /// NE: none will come, whatever happens.
    Never,
}

/// How long to wait for an ACK that may not come (MSH-15 ER or SU).
const SOMETIMES_WAIT: Duration = Duration::from_secs(2);

pub fn ack_asked(msg: &[u8]) -> AckAsked {
    match Message::parse(msg).map(|m| m.accept_ack_type().into_owned()) {
        Ok(t) if t == "NE" => AckAsked::Never,
        Ok(t) if t == "ER" || t == "SU" => AckAsked::Sometimes,
        _ => AckAsked::Always,
    }
}

/// What an ACK says, checked against what was sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub code: Option<AckCode>,
    pub control_id_matches: bool,
    pub text: String,
}

pub fn judge(sent: &[u8], ack: &[u8]) -> Verdict {
    let expected = Message::parse(sent)
        .map(|m| m.control_id().into_owned())
        .unwrap_or_default();
    match wyvern_hl7::read_ack(ack) {
        Ok(a) => Verdict {
            code: a.code,
            control_id_matches: a.control_id == expected,
            text: a.text,
        },
        Err(e) => Verdict {
            code: None,
            control_id_matches: false,
            text: format!("unreadable ACK: {e}"),
        },
    }
}

/// Sends `msgs[range]` on one connection with up to `window` in flight; calls `on` for each
/// answer in order. Returns early on a connection error or timeout.
pub async fn exchange(
    addr: &str,
    msgs: Arc<Vec<Bytes>>,
    range: std::ops::Range<usize>,
    window: usize,
    timeout: Duration,
    tls: Option<&wyvern_connectors::tls::ClientTls>,
    mut on: impl FnMut(Answer),
) -> anyhow::Result<()> {
    let client = MllpClient::connect_with(addr, 64 << 20, tls).await?;
    let (mut tx, mut rx) = client.split();
    let permits = Arc::new(Semaphore::new(window.max(1)));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let sender_permits = permits.clone();
    let to_send = msgs.clone();
    // Writes what the window allows in one go: the frames that may go now are fed together
    // and flushed once, as a pipelining sender with a buffered socket does (a write per frame
    // cost the load tool a system call per message).
    let sender = tokio::spawn(async move {
        let mut next = range.start;
        'window: while next < range.end {
            let Ok(p) = sender_permits.acquire().await else {
                break;
            };
            p.forget();
            loop {
                let _ = sent_tx.send((next, Instant::now()));
                if tx.feed(&to_send[next]).await.is_err() {
                    break 'window;
                }
                next += 1;
                match sender_permits.try_acquire() {
                    Ok(p) if next < range.end => p.forget(),
                    _ => break,
                }
            }
            if tx.flush().await.is_err() {
                break;
            }
        }
        tx
    });
    let mut result = Ok(());
    while let Some((index, sent_at)) = sent_rx.recv().await {
        // A sender must not wait for an ACK its message did not ask for: NE gets none, and ER
        // or SU get one only for the outcome they asked about.
        // Read as each answer is awaited, for this connection's messages only (reading every
        // message of the run up front, on every connection, cost the load tool more CPU than
        // the sending and held each connection back before its first message).
        let asked = ack_asked(&msgs[index]);
        let wait = match asked {
            AckAsked::Never => None,
            AckAsked::Sometimes => Some(timeout.min(SOMETIMES_WAIT)),
            AckAsked::Always => Some(timeout),
        };
        let got = match wait {
            None => Ok(Ok(None)),
            Some(w) => match tokio::time::timeout(w, rx.recv()).await {
                Ok(r) => Ok(r.map(Some)),
                Err(_) if asked == AckAsked::Sometimes => Ok(Ok(None)),
                Err(e) => Err(e),
            },
        };
        let latency = sent_at.elapsed();
        let answer = match got {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no ACK within {}",
                humantime::format_duration(timeout)
            )),
        };
        let failed = answer.is_err();
        on(Answer {
            index,
            latency,
            result: answer,
        });
        permits.add_permits(1);
        if failed {
            result = Err(anyhow::anyhow!("stopped after a connection error"));
            permits.close();
            break;
        }
    }
    sender.abort();
    result
}

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let inputs = read_inputs(&args.inputs, args.raw)?;
    if inputs.is_empty() {
        anyhow::bail!("nothing to send");
    }
    let msgs: Arc<Vec<Bytes>> = Arc::new(
        inputs
            .iter()
            .map(|i| Bytes::from(i.bytes.clone()))
            .collect(),
    );
    let total = msgs.len();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let (mut accepted, mut errors, mut rejected, mut mismatched, mut answered, mut unasked) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let tls = args.tls.load()?;
    let result = exchange(
        &args.to,
        msgs.clone(),
        0..total,
        args.window,
        args.timeout,
        tls.as_deref(),
        |a| {
            answered += 1;
            let origin = &inputs[a.index].origin;
            let sent_id = Message::parse(&msgs[a.index])
                .map(|m| m.control_id().into_owned())
                .unwrap_or_default();
            match &a.result {
                Ok(None) => {
                    unasked += 1;
                    if !args.quiet {
                        let msh15 = Message::parse(&msgs[a.index])
                            .map(|m| m.accept_ack_type().into_owned())
                            .unwrap_or_default();
                        println!("{origin}  {sent_id}  --  no ACK asked (MSH-15 {msh15})");
                    }
                }
                Ok(Some(ack)) => {
                    let v = judge(&msgs[a.index], ack);
                    match v.code.map(|c| c.intent()) {
                        Some(wyvern_hl7::AckIntent::Accept) => accepted += 1,
                        Some(wyvern_hl7::AckIntent::Error) => errors += 1,
                        _ => rejected += 1,
                    }
                    if !v.control_id_matches {
                        mismatched += 1;
                    }
                    if !args.quiet {
                        let code = v.code.map_or("??", |c| c.as_str());
                        let warn = if v.control_id_matches {
                            String::new()
                        } else {
                            "  (MSA-2 does not match MSH-10!)".into()
                        };
                        println!("{origin}  {sent_id}  {code}  {}{warn}", v.text);
                        if args.verbose {
                            println!("{}", String::from_utf8_lossy(ack).replace('\r', "\n"));
                        }
                    }
                }
                Err(e) => {
                    rejected += 1;
                    println!("{origin}  {sent_id}  --  {e}");
                }
            }
            if total > 100 && last_progress.elapsed() > Duration::from_secs(1) {
                last_progress = Instant::now();
                let rate = answered as f64 / started.elapsed().as_secs_f64();
                eprintln!("progress: {answered}/{total} answered, {rate:.0} msg/s");
            }
        },
    )
    .await
    .with_context(|| format!("sending to {}", args.to));
    let secs = started.elapsed().as_secs_f64();
    let not_answered = total - answered;
    eprintln!(
        "sent {answered}/{total} to {} in {secs:.2}s ({:.0} msg/s): {accepted} accepted, {errors} AE/CE, {rejected} AR/CR or failed, {unasked} with no ACK asked (MSH-15), {mismatched} MSA-2 mismatches, {not_answered} unanswered",
        args.to,
        answered as f64 / secs.max(1e-9)
    );
    result?;
    Ok(if accepted + unasked == total && mismatched == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
