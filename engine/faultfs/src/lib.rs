//! Test support: the store on a filesystem that fails on demand — `faultfs.py` beside this
//! crate (FUSE, Python's fusepy) between the engine and a real folder. It keeps what every unsynced write replaced,
//! so a "power cut" really loses what was not fsynced (SIGKILL alone keeps the page cache);
//! it can also fail fsyncs and writes with EIO, or writes with ENOSPC.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mounted faultfs; unmounted when dropped.
#[derive(Debug)]
pub struct FaultFs {
    pub mount: PathBuf,
    backing: PathBuf,
    control: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// Debian's python3 with python3-fusepy (`scripts/test-all` installs both).
const PYTHON: &str = "/usr/bin/python3";

impl FaultFs {
    /// Mounts a fresh, empty faultfs at `self.mount`.
    pub fn mount() -> FaultFs {
        let dir = tempfile::Builder::new()
            .prefix("wyvern-faultfs-")
            .tempdir()
            .expect("temp dir");
        let mut fs = FaultFs {
            mount: dir.path().join("mnt"),
            backing: dir.path().join("backing"),
            control: dir.path().join("control.sock"),
            child: None,
            _dir: dir,
        };
        std::fs::create_dir_all(&fs.mount).expect("mount point");
        std::fs::create_dir_all(&fs.backing).expect("backing folder");
        fs.start();
        fs
    }

    fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("faultfs.py");
        let child = Command::new(PYTHON)
            .arg(script)
            .args([&self.backing, &self.mount, &self.control])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start faultfs.py (needs /usr/bin/python3 with python3-fusepy, and /dev/fuse)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(mounted(&self.mount) && self.control.exists()) {
            assert!(Instant::now() < deadline, "faultfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one control line; panics unless the answer starts with "ok".
    pub fn control(&self, line: &str) -> String {
        let mut s = UnixStream::connect(&self.control).expect("faultfs control socket");
        writeln!(s, "{line}").expect("faultfs control write");
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .expect("faultfs control answer");
        assert!(answer.starts_with("ok"), "faultfs {line}: {answer}");
        answer.trim().to_string()
    }

    /// The power cut: every write not yet fsynced is undone, and the filesystem is mounted
    /// afresh (so nothing cached above it survives either). Stop the engine first.
    pub fn power_cut(&mut self) {
        self.control("crash");
        self.remount();
    }

    /// A harsher power cut: each 4 KiB page an unsynced write touched survives or not, at
    /// random (seeded) — writes torn, with holes, in any order.
    pub fn power_cut_torn(&mut self, seed: u64) {
        self.control(&format!("crash torn {seed}"));
        self.remount();
    }

    fn remount(&mut self) {
        self.unmount();
        self.start();
    }

    fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("umount").arg(&self.mount).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn mounted(path: &Path) -> bool {
    let path = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*path))
}
