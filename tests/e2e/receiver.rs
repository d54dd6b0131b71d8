//! A stand-in MLLP receiver (a downstream system such as a record's MLLP inbound) for
//! delivery tests: answers every message with the ACK a policy chooses, records what arrived.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{CR, FS, VT, frame};

/// Chooses MSA-1 for a control id on its n-th arrival (1-based); `None` answers nothing and
/// closes the connection.
pub type Policy = dyn Fn(&str, usize) -> Option<&'static str> + Send + Sync;

pub struct Receiver {
    pub addr: SocketAddr,
    /// Control ids in arrival order (every arrival, including repeats).
    pub arrivals: Arc<Mutex<Vec<String>>>,
    /// The most frames one read brought whole: above 1, the sender had several in flight.
    pub most_at_once: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start(policy: Box<Policy>) -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), policy)
    }

    pub fn start_on(listener: TcpListener, policy: Box<Policy>) -> Receiver {
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let policy: Arc<Policy> = Arc::from(policy);
        let (a, s, m) = (arrivals.clone(), stop.clone(), most_at_once.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (a, c, p, s) = (a.clone(), counts.clone(), policy.clone(), s.clone());
                        let m = m.clone();
                        thread::spawn(move || serve(stream, &a, &c, &*p, &s, &m));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            addr,
            arrivals,
            most_at_once,
            stop,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.arrivals.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for the arrivals (up to `limit`).
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let ids = self.ids();
            if pred(&ids) || Instant::now() > deadline {
                return ids;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    mut stream: TcpStream,
    arrivals: &Mutex<Vec<String>>,
    counts: &Mutex<HashMap<String, usize>>,
    policy: &Policy,
    stop: &AtomicBool,
    most_at_once: &AtomicUsize,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        let whole = buf.windows(2).filter(|w| *w == [FS, CR]).count();
        most_at_once.fetch_max(whole, Ordering::Relaxed);
        while let Some(start) = buf.iter().position(|&b| b == VT) {
            let Some(end) = buf[start..].windows(2).position(|w| w == [FS, CR]) else {
                break;
            };
            let msg = buf[start + 1..start + end].to_vec();
            buf.drain(..start + end + 2);
            let m = wyvern_hl7::Message::parse(&msg).expect("the engine sends HL7");
            let id = m.control_id().into_owned();
            let n = {
                let mut c = counts.lock().expect("lock");
                let n = c.entry(id.clone()).or_default();
                *n += 1;
                *n
            };
            arrivals.lock().expect("lock").push(id.clone());
            let Some(code) = policy(&id, n) else { return };
            let ack = format!(
                "MSH|^~\\&|DCR|DCR|WYVERN|HUB|20261125||ACK|A{n}|P|2.4\rMSA|{code}|{id}|test receiver\r"
            );
            if stream.write_all(&frame(ack.as_bytes())).is_err() {
                return;
            }
        }
    }
}
