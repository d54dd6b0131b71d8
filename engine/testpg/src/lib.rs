//! A PostgreSQL cluster made for one test: `initdb` under a temporary folder, `pg_ctl` on a
//! free port of 127.0.0.1, stopped and removed when dropped. Nothing is installed or left
//! running; the binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, or `PG_BIN`).
//! `scripts/test-all` installs the `postgresql` package when it is missing.
//!
//! PostgreSQL refuses to run as root: as root, the cluster's folder is given to the
//! `postgres` user and every command runs as that user (`runuser`).
//!
//! ```no_run
//! let pg = wyvern_testpg::PgCluster::start();
//! let url = pg.url("postgres"); // postgresql://wyvern@127.0.0.1:PORT/postgres
//! pg.restart();
//! # let _ = url;
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running throwaway cluster; its superuser is `wyvern`, trusted from 127.0.0.1.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgCluster {
    /// Makes and starts a cluster. Panics with what to install when PostgreSQL is missing.
    pub fn start() -> PgCluster {
        let bin = binaries();
        let dir = tempfile::Builder::new()
            .prefix("wyvern-pg-")
            .tempdir()
            .expect("a temporary folder");
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot give {} to the postgres user",
                dir.path().display()
            );
        }
        let port = free_port();
        let pg = PgCluster { bin, dir, port };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                "wyvern",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.pg_ctl_start();
        pg
    }

    /// A connection URL for `database` (the cluster has `postgres`; tests create their own).
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://wyvern@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`immediate`: no shutdown checkpoint, as a crash would) and
    /// starts it again on the same port.
    pub fn restart(&self) {
        self.stop("immediate");
        self.pg_ctl_start();
    }

    /// Stops the server (`fast`: sessions are ended, a checkpoint is written).
    pub fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        );
    }

    /// Starts a stopped server again.
    pub fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Runs one SQL statement with `psql` and returns its rows, one per line, columns
    /// separated by `|` (for tests that cannot run an async client).
    pub fn sql(&self, database: &str, statement: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-d",
                &self.url(database),
                "-c",
                statement,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {statement:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tool` from PostgreSQL's programs, run as `postgres` when we are root.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Where Debian keeps the newest installed PostgreSQL's programs (or `PG_BIN`).
fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|dirs| {
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| d.file_name().to_str()?.parse::<u32>().ok())
            .max()
    });
    match newest {
        Some(v) => root.join(v.to_string()).join("bin"),
        None => panic!(
            "PostgreSQL is not installed (no {}): scripts/test-all installs it, or `apt-get install postgresql`",
            root.display()
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    // The effective user is root when `id -u` says 0 (asked once; no libc call needed for a
    // test helper).
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    })
}
