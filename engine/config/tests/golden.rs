//! Golden tests for config diagnostics: each `tests/errors/NAME/` folder is a config; the
//! expected `wyvern validate` output is in `tests/errors/NAME.expected`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate change.

use std::path::Path;

fn render(dir: &Path) -> String {
    let root = dir.parent().expect("a case folder has a parent");
    let lines = |diags: Vec<wyvern_config::Diagnostic>| -> String {
        diags
            .iter()
            .map(|d| {
                format!(
                    "{}\n",
                    d.to_string().replace(&format!("{}/", root.display()), "")
                )
            })
            .collect()
    };
    let has_tests = std::fs::read_dir(dir)
        .expect("a case folder reads")
        .filter_map(|e| e.ok())
        .any(|e| wyvern_config::is_route_test_file(&e.path()));
    match wyvern_config::load(dir) {
        Ok(_) if has_tests => match wyvern_config::load_route_tests(dir) {
            Ok((c, tests)) => format!(
                "ok: {} route(s), {} route test file(s)\n",
                c.routes.len(),
                tests.len()
            ),
            Err(diags) => lines(diags),
        },
        Ok(c) => format!("ok: {} route(s)\n", c.routes.len()),
        Err(diags) => lines(diags),
    }
}

#[test]
fn config_errors_match_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let got = render(&case);
        let expected_path = case.with_extension("expected");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_config_builds_with_defaults_and_relative_store() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid");
    let c = wyvern_config::load(&dir).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.engine.store_dir, dir.join("data/store"));
    assert_eq!(c.engine.durability, wyvern_config::Durability::Buffered);
    let wyvern_config::Source::Mllp(m) = &c.routes[0].source else {
        panic!("an MLLP source")
    };
    assert_eq!(m.max_frame, 4 << 20);
    assert_eq!(m.idle_timeout, std::time::Duration::from_secs(120));
    assert_eq!(m.frame_timeout, std::time::Duration::from_secs(30));
    assert_eq!(m.max_connections, 256);
    let r = &c.routes[0];
    assert_eq!(r.steps.len(), 1);
    assert_eq!(r.order_by, wyvern_config::OrderBy::Patient);
    assert_eq!(r.on_permanent, wyvern_config::OnPermanent::Hold);
    assert_eq!(r.retry.first, std::time::Duration::from_secs(2));
    assert_eq!(r.retry.max_attempts, Some(5));
    let names: Vec<&str> = r.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["archive", "dcr"]);
    match &r.destinations[0].kind {
        wyvern_config::DestinationKind::File(f) => assert_eq!(f.dir, dir.join("out/archive")),
        other => panic!("{other:?}"),
    }
}
