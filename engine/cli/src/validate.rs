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
