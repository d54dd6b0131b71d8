//! `wyvern validate`: every config problem at once, as file:line:col — including what only
//! the files a route names can tell: TLS certificates that are missing, expired, expiring
//! within 30 days, or do not match their key, and token keys (`auth.jwt.keys`) that cannot be
//! read.

use std::path::Path;
use std::process::ExitCode;

use wyvern_config::{DestinationKind, Diagnostic, Place};

/// A certificate closer than this to its end is warned about.
const EXPIRY_WARNING_DAYS: i64 = 30;

pub fn validate(config: &Path) -> anyhow::Result<ExitCode> {
    match wyvern_config::load(config) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{w}");
            }
            let (tls_errors, tls_warnings) = tls_findings(&c);
            for d in tls_warnings.iter().chain(&tls_errors) {
                eprintln!("{d}");
            }
            if !tls_errors.is_empty() {
                eprintln!("{}: {} problem(s)", config.display(), tls_errors.len());
                return Ok(ExitCode::from(2));
            }
            // A map step loads the FHIR mappings (tables and field map) when the engine starts:
            // check them now too.
            let maps = c
                .routes
                .iter()
                .flat_map(|r| &r.steps)
                .any(|s| matches!(s, wyvern_config::Step::Map(_)));
            if maps && let Err(e) = crate::map::mapper(Some(config)) {
                eprintln!("{}", crate::report::chain(&e));
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
                    wyvern_config::Source::Mllp(m) if m.tls.is_some() => {
                        format!("mllp {} (TLS)", m.listen)
                    }
                    wyvern_config::Source::Mllp(m) => format!("mllp {}", m.listen),
                    wyvern_config::Source::Directory(d) => {
                        format!("directory {}", d.path.display())
                    }
                    wyvern_config::Source::Amqp(a) => format!("amqp queue {:?}", a.queue),
                    wyvern_config::Source::Fhir(f) if f.tls.is_some() => {
                        format!("fhir https://{}/fhir", f.listen)
                    }
                    wyvern_config::Source::Fhir(f) => format!("fhir http://{}/fhir", f.listen),
                };
                println!("  route {:<24} {source}  ({})", r.name, r.file.display());
                for d in &r.destinations {
                    let what = match &d.kind {
                        DestinationKind::File(f) => format!("file {}", f.dir.display()),
                        DestinationKind::Mllp(m) => format!("mllp {}", m.connect),
                        DestinationKind::Amqp(a) => format!("amqp exchange {:?}", a.exchange),
                        DestinationKind::Fhir(f) => format!("fhir {}", f.base),
                        DestinationKind::Nrl(n) => {
                            format!("nrl {} (custodian {})", n.api.base, n.ods)
                        }
                    };
                    println!("    → {:<22} {what}", d.name);
                }
                if !r.steps.is_empty() {
                    println!("    {} step(s), order by {:?}", r.steps.len(), r.order_by);
                }
            }
            if let Some(b) = &c.bridge {
                let scheme = if b.serve.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                println!("  bridge {scheme}://{}/fhir", b.serve.listen);
                for m in &b.members {
                    let types = if m.serves.len() == wyvern_config::SearchType::ALL.len() {
                        "every type".to_string()
                    } else {
                        m.serves
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    println!(
                        "    ← {:<22} fhir {} (ODS {}; {types})",
                        m.name, m.fhir.base, m.ods
                    );
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

/// Reads every TLS file the routes name, as the engine will when it starts: errors for what
/// would stop it, warnings for certificates about to expire.
fn tls_findings(c: &wyvern_config::Config) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    use wyvern_connectors::tls::inspect_pem;
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let expiring = |place: &Place, cert: &Path, warnings: &mut Vec<Diagnostic>| {
        if let Ok((_, facts)) = inspect_pem("certificate", cert)
            && let Some(leaf) = facts.first()
            && (0..EXPIRY_WARNING_DAYS).contains(&leaf.days_left(now))
        {
            warnings.push(at(
                place,
                false,
                format!(
                    "the certificate {} ({}) expires in {} day(s), on {}",
                    cert.display(),
                    leaf.subject,
                    leaf.days_left(now),
                    leaf.not_after_text
                ),
            ));
        }
    };
    if let Some(t) = &c.engine.http_tls {
        match wyvern_runtime::tls::server("the HTTP listener".into(), t) {
            Ok(_) => expiring(&t.place, &t.cert, &mut warnings),
            Err(e) => errors.push(at(&t.place, true, e.to_string())),
        }
    }
    for r in &c.routes {
        let listener = match &r.source {
            wyvern_config::Source::Mllp(m) => m.tls.as_ref(),
            wyvern_config::Source::Fhir(f) => f.tls.as_ref(),
            _ => None,
        };
        if let Some(t) = listener {
            match wyvern_runtime::tls::server(r.name.clone(), t) {
                Ok(_) => expiring(&t.place, &t.cert, &mut warnings),
                Err(e) => errors.push(at(&t.place, true, e.to_string())),
            }
        }
        if let wyvern_config::Source::Fhir(f) = &r.source
            && let Some(a) = &f.auth
            && let Err(e) = wyvern_connectors::jwt::JwtKeys::load(&a.keys)
        {
            errors.push(Diagnostic::error(&r.file, 0, 0, e.to_string()));
        }
        for d in &r.destinations {
            if let DestinationKind::Mllp(m) = &d.kind
                && let Some(t) = &m.tls
            {
                let place = t.place.clone().unwrap_or_else(|| Place {
                    file: r.file.clone(),
                    line: 0,
                    column: 0,
                });
                match wyvern_runtime::tls::client(d.name.clone(), t) {
                    Ok(_) => {
                        if let Some(cert) = &t.cert {
                            expiring(&place, cert, &mut warnings);
                        }
                    }
                    Err(e) => errors.push(at(&place, true, e.to_string())),
                }
            }
        }
    }
    (errors, warnings)
}

fn at(p: &Place, error: bool, message: String) -> Diagnostic {
    if error {
        Diagnostic::error(&p.file, p.line, p.column, message)
    } else {
        Diagnostic::warning(&p.file, p.line, p.column, message)
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
