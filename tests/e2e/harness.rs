//! The engine under test, as users run it: the real `wyvern` binary in its own process, a
//! config folder written for the test, real sockets. Plus a raw-bytes MLLP peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VT: u8 = 0x0B;
pub const FS: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// A running `wyvern run` with its own config folder and store.
pub struct EngineProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Where /metrics is served.
    pub http: SocketAddr,
    /// Whether the route listens for MLLP (else only HTTP is waited for).
    mllp: bool,
    /// Log options given before `run`.
    log: Vec<String>,
    /// The store folder.
    store: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

impl EngineProcess {
    /// Starts an engine with one MLLP route; `source_extra` is YAML added under `mllp:`
    /// (indented four spaces), e.g. `"    max_frame: 1KiB\n"`.
    pub fn start(source_extra: &str) -> EngineProcess {
        Self::start_route(source_extra, "")
    }

    /// Like [`EngineProcess::start`], with `rest` (steps, destinations, …) after the source.
    /// `{dir}` in `rest` becomes the engine's config folder.
    pub fn start_route(source_extra: &str, rest: &str) -> EngineProcess {
        Self::start_route_logging(source_extra, rest, &["--log", "info"])
    }

    /// [`EngineProcess::start_route`] with other log options, e.g. `--log-format json`.
    pub fn start_route_logging(source_extra: &str, rest: &str, log: &[&str]) -> EngineProcess {
        Self::start_route_with_engine("", source_extra, rest, log)
    }

    /// [`EngineProcess::start_route_logging`] with more engine settings (e.g. `mappings: …`).
    pub fn start_route_with_engine(
        engine_extra: &str,
        source_extra: &str,
        rest: &str,
        log: &[&str],
    ) -> EngineProcess {
        Self::start_with_store(None, "", engine_extra, source_extra, rest, log)
    }

    /// An MLLP route with its store at `store` (default: `store` in the config folder) and
    /// `store_extra` under `store:` (indented two spaces, e.g. `"  durability: buffered\n"`).
    pub fn start_with_store(
        store: Option<&std::path::Path>,
        store_extra: &str,
        engine_extra: &str,
        source_extra: &str,
        rest: &str,
        log: &[&str],
    ) -> EngineProcess {
        let mut e =
            Self::configure_with_store(store, store_extra, engine_extra, source_extra, rest, log);
        e.spawn();
        e
    }

    /// As [`EngineProcess::start_with_store`], its config written but not started (`restart`
    /// starts it).
    pub fn configure_with_store(
        store: Option<&std::path::Path>,
        store_extra: &str,
        engine_extra: &str,
        source_extra: &str,
        rest: &str,
        log: &[&str],
    ) -> EngineProcess {
        let dir = tempfile::Builder::new()
            .prefix("wyvern-e2e-")
            .tempdir()
            .expect("temp dir");
        let addr = free_addr();
        let http = free_addr();
        let store = store.map_or_else(|| dir.path().join("store"), std::path::Path::to_path_buf);
        std::fs::write(
            dir.path().join("wyvern.yaml"),
            format!(
                "version: 1\nstore:\n  path: {}\n{store_extra}http:\n  listen: {http}\n{engine_extra}",
                store.display()
            ),
        )
        .expect("write");
        let rest = rest.replace("{dir}", &dir.path().display().to_string());
        let route = format!(
            "version: 1\nroute: e2e\nsource:\n  mllp:\n    listen: {addr}\n{source_extra}{rest}"
        );
        std::fs::write(dir.path().join("e2e.yaml"), route).expect("write");
        EngineProcess {
            child: None,
            addr,
            http,
            dir,
            mllp: true,
            store,
            log: log.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// An engine whose one route is written in full by the test (`{dir}` becomes the config
    /// folder); for sources other than MLLP.
    pub fn start_with_route_file(route: &str) -> EngineProcess {
        Self::start_with_files(&[("e2e.yaml", route)])
    }

    /// An engine whose config files beside `wyvern.yaml` (routes, `bridge.yaml`) are written in
    /// full by the test (`{dir}` becomes the config folder).
    pub fn start_with_files(files: &[(&str, &str)]) -> EngineProcess {
        let dir = tempfile::Builder::new()
            .prefix("wyvern-e2e-")
            .tempdir()
            .expect("temp dir");
        let http = free_addr();
        std::fs::write(
            dir.path().join("wyvern.yaml"),
            format!("version: 1\nstore:\n  path: store\nhttp:\n  listen: {http}\n"),
        )
        .expect("write");
        for (name, text) in files {
            std::fs::write(
                dir.path().join(name),
                text.replace("{dir}", &dir.path().display().to_string()),
            )
            .expect("write");
        }
        let mut e = EngineProcess {
            child: None,
            addr: free_addr(),
            http,
            store: dir.path().join("store"),
            dir,
            mllp: false,
            log: vec!["--log".into(), "info".into()],
        };
        e.spawn();
        e
    }

    /// The folder of its config (`wyvern.yaml` and the route).
    pub fn config_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.clone()
    }

    /// A reader on the store once it holds at least `rows` messages (see [`store_rows`]).
    pub fn store_with(&self, rows: usize) -> wyvern_store::InboxReader {
        store_rows(&self.store_dir(), rows)
    }

    /// `wyvern run` on this config, its log appended to `engine.log`.
    fn launch(&self) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("engine.log"))
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_wyvern"))
            .args(&self.log)
            .args(["run", "--config"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wyvern")
    }

    /// Starts the engine and waits until it listens. Ports are picked free before the engine
    /// binds them, so another process may take one meanwhile: an engine that exits saying so
    /// is started again on fresh ports (its config rewritten), and one that exits for another
    /// reason fails the test with its log, not a timeout. A port taken by someone else also
    /// answers a connect, so the engine counts as listening only when every port answers on
    /// two polls 50 ms apart with the engine still running (it binds its MLLP sources, then
    /// HTTP, and exits within milliseconds if a bind fails).
    fn spawn(&mut self) {
        const LIMIT: Duration = Duration::from_secs(20);
        const POLL: Duration = Duration::from_millis(50);
        for attempt in 1.. {
            let log_before = self.log().len();
            let mut child = self.launch();
            // Every test engine serves HTTP; MLLP routes also listen on `addr`.
            let mut listening = vec![self.http];
            if self.mllp {
                listening.push(self.addr);
            }
            let deadline = Instant::now() + LIMIT;
            let mut answered = 0;
            let exited = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break Some(status);
                }
                if listening.iter().all(|a| TcpStream::connect(a).is_ok()) {
                    answered += 1;
                    if answered == 2 {
                        break None;
                    }
                } else {
                    answered = 0;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "nothing listening on {listening:?} after {LIMIT:?}: {}",
                        self.log()
                    );
                }
                std::thread::sleep(POLL);
            };
            let Some(status) = exited else {
                self.child = Some(child);
                return;
            };
            let said = self.log().get(log_before..).unwrap_or_default().to_string();
            let ours_taken = said.contains("Address already in use")
                && listening.iter().any(|a| said.contains(&a.to_string()));
            assert!(
                attempt < 4 && ours_taken,
                "the engine exited ({status}) before it listened: {said}"
            );
            self.move_ports();
        }
    }

    /// Gives the engine fresh ports, each new one differing from both old ones and from the
    /// other: every config file that names the old ones is rewritten in one pass.
    fn move_ports(&mut self) {
        let old = [self.http, self.addr];
        let fresh = loop {
            let (a, b) = (
                TcpListener::bind("127.0.0.1:0"),
                TcpListener::bind("127.0.0.1:0"),
            );
            let pair = [
                a.and_then(|l| l.local_addr()).expect("a free port"),
                b.and_then(|l| l.local_addr()).expect("a free port"),
            ];
            if pair.iter().all(|p| !old.contains(p)) {
                break pair;
            }
        };
        for entry in std::fs::read_dir(self.dir.path()).expect("config dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read");
                std::fs::write(&path, replace_addrs(&text, &old, &fresh)).expect("write");
            }
        }
        [self.http, self.addr] = fresh;
    }

    /// SIGKILL: no chance to flush or answer anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        c.wait().expect("wait")
    }

    /// Starts the engine expecting it to refuse and exit within `limit`: its exit status.
    pub fn start_expecting_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        assert!(self.child.is_none(), "stop the engine first");
        let mut child = self.launch();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the engine did not exit within {limit:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the engine first");
        self.spawn();
    }

    /// The engine's process id (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The engine's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A reader on the store in `dir` once it holds at least `rows` messages. The index is filled
/// just behind the journal (the ACK point), so a test that reads right after its ACKs waits
/// the few milliseconds that takes.
pub fn store_rows(dir: &std::path::Path, rows: usize) -> wyvern_store::InboxReader {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(reader) = wyvern_store::InboxReader::open(dir) {
            let total: i64 = reader
                .counts()
                .map(|c| c.iter().map(|c| c.count).sum())
                .unwrap_or(0);
            if total >= rows as i64 {
                return reader;
            }
            assert!(
                Instant::now() < deadline,
                "the store holds {total} rows, expected {rows}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET path` over HTTP/1.1: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// `POST path` with a JSON body: (status code, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    http_raw(addr, request.as_bytes())
}

/// Any request as bytes: (status code, body). A server may answer before it has read all of
/// the request (refusing a large body), so a failed write is not an error: the answer is.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Starts a test server that is not Wyvern's code (`cmd`) and waits for its first line,
/// `listening …`; `what` names it in a failure.
pub fn start_listening(mut cmd: std::process::Command, what: &str) -> std::process::Child {
    use std::io::BufRead as _;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e} (scripts/test-all installs Node.js)"));
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with("listening"), "{what} said {line:?}");
    child
}

/// The value of the first `/metrics` line starting with `line_start` (0 when absent).
pub fn metric(e: &EngineProcess, line_start: &str) -> u64 {
    let (_, m) = http_get(e.http, "/metrics");
    m.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Polls `done` every 50 ms until it holds or `limit` passes (the caller asserts afterwards,
/// with what it found).
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_listening(addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listening on {addr} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `text` with each `old[i]` replaced by `new[i]` where it stands whole (`:2575` is not
/// `:25750`), in one pass, so a new address that equals another old one is not replaced again.
fn replace_addrs(text: &str, old: &[SocketAddr], new: &[SocketAddr]) -> String {
    let old: Vec<String> = old.iter().map(ToString::to_string).collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (i, o) in old.iter().enumerate() {
            if let Some(after) = rest.strip_prefix(o.as_str())
                && !after.starts_with(|c: char| c.is_ascii_digit())
            {
                out.push_str(&new[i].to_string());
                rest = after;
                continue 'scan;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `<VT>payload<FS><CR>`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 3);
    f.push(VT);
    f.extend_from_slice(payload);
    f.extend_from_slice(&[FS, CR]);
    f
}

/// A raw MLLP peer: writes exactly the bytes a test gives it, reads whole answer frames.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub fn connect(addr: SocketAddr) -> Wire {
        Wire::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A peer on a socket the test connected itself (e.g. from another loopback address).
    pub fn from_stream(stream: TcpStream) -> Wire {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    /// The next answer's payload (without framing), or `None` if none comes within `wait` or
    /// the engine closed the connection.
    pub fn read_frame_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == VT)
                && let Some(end) = self.buf[start..].windows(2).position(|w| w == [FS, CR])
            {
                let payload = self.buf[start + 1..start + end].to_vec();
                self.buf.drain(..start + end + 2);
                return Some(payload);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn read_frame(&mut self) -> Vec<u8> {
        self.read_frame_within(Duration::from_secs(10))
            .expect("an ACK within 10 s")
    }

    /// Sends one message and returns its ACK with MSH-7 and MSH-10 normalised.
    pub fn exchange(&mut self, payload: &[u8]) -> String {
        self.write(&frame(payload));
        normalise_ack(&self.read_frame())
    }
}

/// An ACK as text, with the two fields that change every run (MSH-7 time, MSH-10 id)
/// replaced by `<TS>` and `<ID>` and segments on their own lines, so it can be compared exactly.
pub fn normalise_ack(ack: &[u8]) -> String {
    let text = String::from_utf8_lossy(ack).into_owned();
    let sep = text.chars().nth(3).unwrap_or('|');
    let mut out = Vec::new();
    for (i, seg) in text.split('\r').enumerate() {
        if i == 0 {
            let mut fields: Vec<String> = seg.split(sep).map(str::to_string).collect();
            // fields[0] is "MSH", fields[1] MSH-2, so MSH-n is fields[n-1].
            if fields.len() > 9 {
                fields[6] = "<TS>".into();
                fields[9] = "<ID>".into();
            }
            out.push(fields.join(&sep.to_string()));
        } else if !seg.is_empty() {
            out.push(seg.to_string());
        }
    }
    out.join("\n")
}

/// A small ADT^A01 with the given control id.
pub fn adt(control_id: &str, n: u64) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RX1|WYVERN|CHIE|20261125143000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261125143000\r\
         PID|1||{}^^^NHS^NH~K{n:07}^^^RX1^MR||TESTPATIENT^ALEX||19700101|U\r\
         PV1|1|I|WARD7^BAY2^BED1\r",
        wyvern_hl7::synthetic::nhs_number(n)
    )
    .into_bytes()
}

/// `wyvern --log warn ARGS --store STORE` run to its end, as the operator `test-operator`.
pub fn wyvern_on_store(args: &[&str], store: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn"])
        .args(args)
        .arg("--store")
        .arg(store)
        .env("USER", "test-operator")
        .output()
        .expect("run wyvern")
}

/// First arrivals (a repeat is at-least-once, not disorder) that came before the previous
/// first arrival of their key: `key` picks a control id's key (its patient, its sender…);
/// within a key, control ids sort in sending order.
pub fn out_of_order_by(ids: &[String], key: impl Fn(&str) -> &str) -> usize {
    let mut last: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut bad = 0;
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        if let Some(prev) = last.insert(key(id), id.as_str())
            && prev > id.as_str()
        {
            bad += 1;
        }
    }
    bad
}

/// The harness's own fault: a port picked free and taken by another process before the
/// engine bound it ended the test with "nothing listening" after 20 s. The MLLP port, then the
/// HTTP port: the one taken is answered by its taker, so a connect alone does not show the
/// engine listening (it binds MLLP first, then fails on HTTP and exits).
#[test]
fn an_engine_whose_port_was_taken_meanwhile_starts_on_another() {
    for http in [false, true] {
        let mut e = EngineProcess::configure_with_store(None, "", "", "", "", &[]);
        let taken = if http { e.http } else { e.addr };
        let squatter = TcpListener::bind(taken).expect("take the port");
        e.restart();
        assert!(e.addr != taken && e.http != taken, "moved off {taken}");
        let ack = Wire::connect(e.addr).exchange(&adt("PORT1", 1));
        assert!(ack.contains("MSA|AA|PORT1"), "{ack}");
        assert_eq!(
            http_get(e.http, "/health").0,
            200,
            "the engine's own /health"
        );
        drop(squatter);
    }
}

#[test]
fn addresses_are_replaced_whole_and_in_one_pass() {
    let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:4002".parse().unwrap();
    let text = "listen: 127.0.0.1:4001\nhttp: 127.0.0.1:4002\nother: 127.0.0.1:40012\n";
    // The new http address is the old MLLP one: replaced once, not twice.
    assert_eq!(
        replace_addrs(text, &[a, b], &[b, "127.0.0.1:4003".parse().unwrap()]),
        "listen: 127.0.0.1:4002\nhttp: 127.0.0.1:4003\nother: 127.0.0.1:40012\n"
    );
}
