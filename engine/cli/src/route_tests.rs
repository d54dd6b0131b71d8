//! `wyvern test`: a config folder's route tests (`NAME.test.yaml`), run offline. Each case's
//! message goes through its route as the engine would take it — filters, edits, plugins and
//! the FHIR mapping for real, plugins in test mode (fixed clock, sequential ids) — and what
//! each destination would be sent is compared with what the case expects. Nothing is stored
//! or sent. `--update` writes what the routes send into the cases' `body_file`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use wyvern_config::{Config, ExpectedBody, RouteTests, Source};
use wyvern_runtime::RoutePlan;
use wyvern_runtime::route_test::{CaseReport, Failure, render, run_case};
use wyvern_runtime::source::fhir::FhirCodec;
use wyvern_runtime::transform::TransformLoader;

use crate::inbox::printable;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A config folder (every NAME.test.yaml in it) or one test file.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Write what each route sends into the cases' body_file files (after a deliberate
    /// change; review the diff before committing it).
    #[arg(long)]
    update: bool,
    /// Only the cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    case: Option<String>,
    /// Where compiled plugins are kept between runs (default: $XDG_CACHE_HOME/wyvern/plugins,
    /// else ~/.cache/wyvern/plugins; only this user can read or write it).
    #[arg(long, value_name = "DIR", env = "WYVERN_PLUGIN_CACHE")]
    plugin_cache: Option<PathBuf>,
}

/// The user's own cache folder for compiled plugins: a plugin compiles once (a JavaScript one
/// takes over a second), then loads in microseconds.
fn plugin_cache(asked: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = asked {
        return Some(dir.to_path_buf());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wyvern").join("plugins"))
}

/// Counts for the closing line, and what `--update` wrote.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Each body file written in this run, with its text: two cases that expect different
    /// bodies in one file cannot both be made to pass.
    written: HashMap<PathBuf, String>,
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (config, suites) = match wyvern_config::load_route_tests(&args.path) {
        Ok(loaded) => loaded,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("{}: {} problem(s)", args.path.display(), diags.len());
            return Ok(ExitCode::from(2));
        }
    };
    if suites.is_empty() {
        eprintln!(
            "{}: no route tests here: write NAME.test.yaml beside a route (README.md, \"Route tests\")",
            args.path.display()
        );
        return Ok(ExitCode::from(2));
    }
    let cache = plugin_cache(args.plugin_cache.as_deref());
    let loader = crate::plugin::loader::WasmLoader::new(cache, true, config.tables.clone())
        .with_mappings_dir(&config.engine.mappings_dir);
    let mut tally = Tally::default();
    for suite in &suites {
        run_suite(&config, &loader, suite, &args, &mut tally)?;
    }
    if tally.passed + tally.failed == 0 {
        eprintln!(
            "no case's name contains {:?}: nothing was run",
            args.case.as_deref().unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    let updated = if args.update {
        format!(", {} file(s) written", tally.written.len())
    } else {
        String::new()
    };
    println!(
        "{} passed, {} failed{updated} ({:.2} s)",
        tally.passed,
        tally.failed,
        started.elapsed().as_secs_f64()
    );
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_suite(
    config: &Config,
    loader: &crate::plugin::loader::WasmLoader,
    suite: &RouteTests,
    args: &TestArgs,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let route = config
        .routes
        .iter()
        .find(|r| r.name == suite.route)
        .ok_or_else(|| anyhow::anyhow!("route {} vanished", suite.route))?;
    println!("{} (route {})", suite.file.display(), route.name);
    let plan = match RoutePlan::load(route, loader) {
        Ok(p) => p,
        Err(e) => {
            // A plugin that does not load fails every case of its route, each said once.
            println!("  cannot load the route's steps: {e}");
            tally.failed += suite.cases.len();
            return Ok(());
        }
    };
    let codec: Option<Arc<dyn FhirCodec>> = match route.source {
        Source::Fhir(_) => Some(loader.fhir_codec().map_err(anyhow::Error::msg)?),
        _ => None,
    };
    for (n, case) in suite.cases.iter().enumerate() {
        if args
            .case
            .as_ref()
            .is_some_and(|c| !case.name.contains(c.as_str()))
        {
            continue;
        }
        let mut report = run_case(&plan, codec.as_deref(), n, case);
        if args.update && !report.passed() {
            let conflicts = update_bodies(case, &report, &mut tally.written)?;
            let mut case = case.clone();
            if refresh(&mut case, &tally.written) {
                report = run_case(&plan, codec.as_deref(), n, &case);
            }
            report.failures.extend(conflicts);
        }
        print_report(&suite.file, case, &report);
        if report.passed() {
            tally.passed += 1;
        } else {
            tally.failed += 1;
        }
    }
    Ok(())
}

fn print_report(file: &Path, case: &wyvern_config::TestCase, report: &CaseReport) {
    if report.passed() {
        println!("  ok    {}", case.name);
        return;
    }
    println!(
        "  FAIL  {}  ({}:{}:{})",
        case.name,
        file.display(),
        case.at.line,
        case.at.column
    );
    // Bodies are a sender's bytes: control characters are shown, never sent to the terminal.
    for f in &report.failures {
        println!("        {}", printable(&f.headline));
        for line in &f.detail {
            println!("        {}", printable(line));
        }
    }
}

/// Writes the `body_file` of each destination whose body differs and that received something
/// (a case failing for another reason keeps its expected bodies). A file another case of this
/// run wrote differently is not overwritten: that is a failure of its own.
fn update_bodies(
    case: &wyvern_config::TestCase,
    report: &CaseReport,
    written: &mut HashMap<PathBuf, String>,
) -> anyhow::Result<Vec<Failure>> {
    let mut conflicts = Vec::new();
    for check in &case.expect.at {
        let Some(ExpectedBody::File { path, .. }) = &check.body else {
            continue;
        };
        if !report.body_differs.contains(&check.destination) {
            continue;
        }
        let Some((_, bodies)) = report
            .received
            .iter()
            .find(|(d, _)| *d == check.destination)
        else {
            continue;
        };
        let new = render(bodies);
        match written.get(path) {
            Some(text) if *text == new => continue,
            Some(_) => {
                conflicts.push(Failure {
                    headline: format!(
                        "{}: another case of this run wrote {} with another body: give each its own file",
                        check.destination,
                        path.display()
                    ),
                    detail: Vec::new(),
                });
                continue;
            }
            None => {}
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &new)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("  wrote {}", path.display());
        written.insert(path.clone(), new);
    }
    Ok(conflicts)
}

/// Gives the case the texts `--update` wrote this run; whether any of its files was one.
fn refresh(case: &mut wyvern_config::TestCase, written: &HashMap<PathBuf, String>) -> bool {
    let mut changed = false;
    for check in &mut case.expect.at {
        if let Some(ExpectedBody::File { path, text }) = &mut check.body
            && let Some(new) = written.get(path)
        {
            *text = Some(new.clone());
            changed = true;
        }
    }
    changed
}
