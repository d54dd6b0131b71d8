//! `wyvern validate`: every config problem at once, as file:line:col.

use std::path::Path;
use std::process::ExitCode;

use wyvern_config::DestinationKind;

pub fn validate(config: &Path) -> anyhow::Result<ExitCode> {
    match wyvern_config::load(config) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{w}");
            }
            // A map step loads the FHIR mappings (tables and field map) when the engine starts:
            // check them now too.
            let maps = c
                .routes
                .iter()
                .flat_map(|r| &r.steps)
                .any(|s| matches!(s, wyvern_config::Step::Map(_)));
            if maps && let Err(e) = crate::map::mapper(Some(config)) {
                eprintln!("{e:#}");
                return Ok(ExitCode::from(2));
            }
            println!(
                "{}: ok, {} route(s), store {}",
                config.display(),
                c.routes.len(),
                c.engine.store_dir.display()
            );
            for r in &c.routes {
                let source = match &r.source {
                    wyvern_config::Source::Mllp(m) => format!("mllp {}", m.listen),
                    wyvern_config::Source::Directory(d) => {
                        format!("directory {}", d.path.display())
                    }
                    wyvern_config::Source::Amqp(a) => format!("amqp queue {:?}", a.queue),
                    wyvern_config::Source::Fhir(f) => format!("fhir http://{}/fhir", f.listen),
                };
                println!("  route {:<24} {source}  ({})", r.name, r.file.display());
                for d in &r.destinations {
                    let what = match &d.kind {
                        DestinationKind::File(f) => format!("file {}", f.dir.display()),
                        DestinationKind::Mllp(m) => format!("mllp {}", m.connect),
                        DestinationKind::Amqp(a) => format!("amqp exchange {:?}", a.exchange),
                        DestinationKind::Fhir(f) => format!("fhir {}", f.base),
                    };
                    println!("    → {:<22} {what}", d.name);
                }
                if !r.steps.is_empty() {
                    println!("    {} step(s), order by {:?}", r.steps.len(), r.order_by);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("{}: {} problem(s)", config.display(), diags.len());
            Ok(ExitCode::from(2))
        }
    }
}

/// Config findings as one error, a line each (`file:line:col: …`).
pub fn diagnostics(d: Vec<wyvern_config::Diagnostic>) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    )
}
