//! The CLI as a user meets it: the quickstart config runs, `wyvern send` exits 0 on all-AA and
//! 1 on AR, `wyvern inbox` finds what was stored, `wyvern validate` points at file:line:col.

use std::process::Command;

use crate::harness::wait_listening;

fn wyvern() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wyvern"));
    c.args(["--log", "warn"]);
    c
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn quickstart_runs_accepts_the_samples_and_refuses_the_bad_ones() {
    let dir = tempfile::tempdir().expect("temp");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port()
    };
    let (port, http) = (free(), free());
    for f in ["wyvern.yaml", "pas-adt.yaml"] {
        let text = std::fs::read_to_string(repo("examples/quickstart").join(f)).expect("read");
        let text = text
            .replace("127.0.0.1:2575", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:9465", &format!("127.0.0.1:{http}"));
        std::fs::write(dir.path().join(f), text).expect("write");
    }
    let mut engine = wyvern()
        .args(["run", "--config"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    let addr = format!("127.0.0.1:{port}");
    wait_listening(
        addr.parse().expect("addr"),
        std::time::Duration::from_secs(20),
    );

    let send = |folder: &str| {
        let out = wyvern()
            .args(["send", "--to", &addr])
            .arg(repo(folder))
            .output()
            .expect("send");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = send("examples/quickstart/messages");
    assert_eq!(code, Some(0), "{stdout}");
    let accepted = stdout
        .lines()
        .filter(|l| l.contains("  AA  ") || l.contains("  CA  "))
        .count();
    assert_eq!(accepted, 4, "{stdout}");
    let (code, stdout) = send("examples/quickstart/bad");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("AR  the message holds binary data"),
        "{stdout}"
    );
    assert!(
        stdout.contains("AR  MSH-9 (message type) is empty"),
        "{stdout}"
    );

    let _ = crate::harness::store_rows(&dir.path().join("wyvern-data"), 7);
    let list = wyvern()
        .args(["inbox", "list", "--status", "rejected", "--config"])
        .arg(dir.path())
        .output()
        .expect("list");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.lines().count(), 1 + 3, "{listed}");
    let by_nhs = wyvern()
        .args(["inbox", "list", "--nhs-number", "9990000026", "--config"])
        .arg(dir.path())
        .output()
        .expect("list");
    let listed = String::from_utf8_lossy(&by_nhs.stdout);
    assert!(
        listed.contains("QS000003") && listed.contains("QS000004"),
        "{listed}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &engine.id().to_string()])
        .status();
    assert!(engine.wait().expect("wait").success());
}

#[test]
fn validate_reports_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp");
    std::fs::write(
        dir.path().join("r.yaml"),
        "version: 1\nroute: r\nsource:\n  mllp:\n    listen: 127.0.0.1:2575\n    max_frmae: 1MiB\n",
    )
    .expect("write");
    let out = wyvern()
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .expect("validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(
            "r.yaml:6:5: error: unknown field `max_frmae`, expected one of listen, max_frame"
        ),
        "{stderr}"
    );
    let ok = wyvern()
        .args(["validate", "--config"])
        .arg(repo("examples/quickstart"))
        .output()
        .expect("validate");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn plugin_new_gives_plugins_that_build_check_run_and_pass_their_route_test_outside_the_source_tree()
{
    let dir = tempfile::tempdir().expect("temp");
    let input = repo("examples/quickstart/messages/01-adt-a01-admit.hl7");
    for (name, lang) in [("hello-rust", "rust"), ("hello-js", "js")] {
        let run = |args: &[&str]| {
            let out = wyvern()
                // As a trust's developer would: in a folder of their own, outside Wyvern's
                // source tree (the SDK and the WIT come from the binary).
                .current_dir(dir.path())
                // Shares the plugins workspace's target: std for wasm32 is built once.
                .env("CARGO_TARGET_DIR", repo("plugins/target"))
                .args(args)
                .output()
                .expect("run wyvern");
            assert!(
                out.status.success(),
                "wyvern {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let at = dir.path().display().to_string();
        run(&["plugin", "new", name, "--lang", lang, "--dir", &at]);
        let src = dir.path().join(name).display().to_string();
        let dist = dir.path().join(name).join("dist").display().to_string();
        run(&["plugin", "build", &src, "--out", &dist]);
        let wasm = format!("{dist}/{name}.wasm");
        assert!(run(&["plugin", "check", &wasm]).contains("ok"));
        let out = run(&[
            "plugin",
            "run",
            &wasm,
            "--input",
            &input.display().to_string(),
        ]);
        assert!(
            out.contains("output 1 of 1") && out.contains("ADT^A01"),
            "{out}"
        );
        // The route and its test that come with the plugin pass as created.
        let tested = run(&["test", &format!("{src}/route")]);
        assert!(tested.contains("1 passed, 0 failed"), "{tested}");
    }
}

#[test]
fn map_prints_the_bundle_a_route_would_send_and_refuses_what_it_cannot_map() {
    let golden = |name: &str| repo("engine/fhir/tests/golden").join(name);
    let out = wyvern()
        .args(["map"])
        .arg(golden("adt-a08-invalid-nhs.hl7"))
        .output()
        .expect("run wyvern map");
    assert!(out.status.success());
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON Bundle");
    assert_eq!(bundle["type"], "transaction");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid NHS number"));
    let xml = wyvern()
        .args(["map", "--xml"])
        .arg(golden("oru-r01-fbc.hl7"))
        .output()
        .expect("run wyvern map --xml");
    assert!(String::from_utf8_lossy(&xml.stdout).contains("<DiagnosticReport>"));
    let refused = wyvern()
        .args(["map"])
        .arg(golden("adt-a01-no-identifier.hl7"))
        .output()
        .expect("run wyvern map");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PID-3 has no identifier"));
}

/// Issue 11 item 12: `wyvern send` waited 30 s for the ACK of a message whose MSH-15 is NE (the
/// engine rightly sends none), then stopped the whole run. Now it does not wait for an ACK the
/// message did not ask for, and the rest of the run goes on.
#[test]
fn send_does_not_wait_for_an_ack_the_message_did_not_ask_for() {
    let e = crate::harness::EngineProcess::start("");
    let dir = tempfile::tempdir().expect("dir");
    let with_msh15 = |id: &str, n: u64, msh15: &str| {
        let m = String::from_utf8(crate::harness::adt(id, n)).expect("utf-8");
        m.replacen("|P|2.4\r", &format!("|P|2.4|||{msh15}\r"), 1)
    };
    std::fs::write(dir.path().join("1.hl7"), with_msh15("NE0001", 1, "AL")).expect("write");
    std::fs::write(dir.path().join("2.hl7"), with_msh15("NE0002", 2, "NE")).expect("write");
    std::fs::write(dir.path().join("3.hl7"), with_msh15("NE0003", 3, "AL")).expect("write");
    let out = wyvern()
        .args(["send", "--timeout", "5s", "--to", &e.addr.to_string()])
        .arg(dir.path())
        .output()
        .expect("send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("NE0002  --  no ACK asked (MSH-15 NE)"),
        "{stdout}"
    );
    assert!(stdout.contains("NE0003  CA"), "{stdout}");
}

/// Issue 11 item 10: the store, the delivered files and the caches were created with the
/// default umask (world-readable patient data). Now the engine's files are 0600 and its
/// folders 0700.
#[test]
fn stored_and_delivered_data_is_readable_by_the_engine_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let e = crate::harness::EngineProcess::start_route(
        "",
        "destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let mut w = crate::harness::Wire::connect(e.addr);
    assert!(
        w.exchange(&crate::harness::adt("PERM1", 1))
            .contains("MSA|AA|PERM1")
    );
    let out = e.dir.path().join("out");
    crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some())
    });
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let mut wrong = Vec::new();
    for dir in [e.store_dir(), out.clone()] {
        if mode(&dir) != 0o700 {
            wrong.push(format!("{} {:o}", dir.display(), mode(&dir)));
        }
        for f in std::fs::read_dir(&dir)
            .expect("read")
            .filter_map(Result::ok)
        {
            let (p, want) = if f.path().is_dir() {
                (f.path(), 0o700)
            } else {
                (f.path(), 0o600)
            };
            if mode(&p) != want {
                wrong.push(format!("{} {:o}", p.display(), mode(&p)));
            }
        }
    }
    assert!(wrong.is_empty(), "readable by others: {wrong:#?}");
}
