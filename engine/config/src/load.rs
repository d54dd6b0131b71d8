//! Reading a config folder or file from disk: the only I/O in this crate.

use std::path::{Path, PathBuf};

use crate::code_table::{check_table_refs, parse_code_tables, read_code_table_files};
use crate::{Config, Diagnostic, ENGINE_FILE, validate};

/// One config file's path and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn is_engine_file(&self) -> bool {
        self.path.file_name().is_some_and(|n| n == ENGINE_FILE)
    }

    pub fn is_bridge_file(&self) -> bool {
        self.path
            .file_name()
            .is_some_and(|n| n == crate::BRIDGE_FILE)
    }
}

fn is_route_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_route_test_file(p)
}

/// Reads a config folder (`wyvern.yaml` plus route files) or a single route file. Returns the
/// folder that relative paths are resolved against, and the files in a stable order.
pub fn read_sources(path: &Path) -> Result<(PathBuf, Vec<SourceFile>), Vec<Diagnostic>> {
    let io_err =
        |p: &Path, e: std::io::Error| vec![Diagnostic::error(p, 0, 0, format!("cannot read: {e}"))];
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    let (base, files) = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_route_file(p))
            .collect();
        files.sort();
        (path.to_path_buf(), files)
    } else {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut files = vec![path.to_path_buf()];
        let engine = base.join(ENGINE_FILE);
        if path.file_name().is_some_and(|n| n != ENGINE_FILE) && engine.is_file() {
            files.insert(0, engine);
        }
        (base, files)
    };
    let mut sources = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => sources.push(SourceFile { path: f, text }),
            Err(e) => errors.extend(io_err(&f, e)),
        }
    }
    if errors.is_empty() {
        Ok((base, sources))
    } else {
        Err(errors)
    }
}

/// Reads and validates a config folder or file, then its code tables (the mappings folder
/// the engine settings name) and every table a step refers to.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let (base, sources) = read_sources(path)?;
    let mut config = validate(&base, &sources)?;
    let files = read_code_table_files(&config.engine.mappings_dir)?;
    config.tables = parse_code_tables(&files)?;
    let missing = check_table_refs(&config, &config.tables);
    if missing.is_empty() {
        Ok(config)
    } else {
        Err(missing)
    }
}

/// Whether a file is a route test (`NAME.test.yaml`).
pub fn is_route_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Reads the route tests at `path` — a config folder (its `*.test.yaml`) or one test file (its
/// folder is the config) — with the config they test, and the files their cases name. An
/// expected body's file that does not exist yet is left empty (`wyvern test --update` writes
/// it); an input that cannot be read is an error at the line that names it.
pub fn load_route_tests(path: &Path) -> Result<(Config, Vec<crate::RouteTests>), Vec<Diagnostic>> {
    let io_err =
        |p: &Path, e: std::io::Error| vec![Diagnostic::error(p, 0, 0, format!("cannot read: {e}"))];
    let (dir, tests) = if std::fs::metadata(path)
        .map_err(|e| io_err(path, e))?
        .is_dir()
    {
        let mut tests: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_err(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_route_test_file(p))
            .collect();
        tests.sort();
        (path.to_path_buf(), tests)
    } else if is_route_test_file(path) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, vec![path.to_path_buf()])
    } else {
        return Err(vec![Diagnostic::error(
            path,
            0,
            0,
            "not a route test: expected a config folder or a NAME.test.yaml file",
        )]);
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let config = load(&dir)?;
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for t in tests {
        let text = match std::fs::read_to_string(&t) {
            Ok(text) => text,
            Err(e) => {
                errors.extend(io_err(&t, e));
                continue;
            }
        };
        match crate::route_test::validate_route_tests(
            &SourceFile {
                path: t.clone(),
                text,
            },
            &config,
        ) {
            Ok(mut tests) => {
                read_case_files(&mut tests, &mut errors);
                all.push(tests);
            }
            Err(d) => errors.extend(d),
        }
    }
    if errors.is_empty() {
        Ok((config, all))
    } else {
        Err(errors)
    }
}

/// Reads what a test's cases name: inputs (an error if missing) and expected bodies (absent
/// until written).
fn read_case_files(tests: &mut crate::RouteTests, errors: &mut Vec<Diagnostic>) {
    for case in &mut tests.cases {
        if let crate::Input::File { path, at, text } = &mut case.input {
            match std::fs::read(&*path) {
                Ok(bytes) => *text = Some(bytes),
                Err(e) => errors.push(Diagnostic::error(
                    &tests.file,
                    at.line,
                    at.column,
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        for check in &mut case.expect.at {
            if let Some(crate::ExpectedBody::File { path, text }) = &mut check.body {
                match std::fs::read_to_string(&*path) {
                    Ok(t) => *text = Some(t),
                    // Not written yet: the case fails saying so, and --update writes it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => errors.push(Diagnostic::error(
                        &tests.file,
                        check.at.line,
                        check.at.column,
                        format!(
                            "cannot read {} (an expected body is UTF-8 text): {e}",
                            path.display()
                        ),
                    )),
                }
            }
        }
    }
}
