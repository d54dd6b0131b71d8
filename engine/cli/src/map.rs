//! `wyvern map`: the built-in HL7v2 → FHIR mapping on one message, printed — what a
//! `map: hl7v2-to-fhir` step would send, with its warnings — so an integration team can check
//! a feed's messages (and their own tables) before a route goes live.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// The HL7v2 message (LF, CRLF or CR segment ends).
    pub input: PathBuf,
    /// A config folder whose mappings folder (code tables, hl7v2-to-fhir.map.yaml) replaces
    /// the built-in ones; without it the built-in mappings are used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the Bundle as XML instead of JSON.
    #[arg(long)]
    pub xml: bool,
    /// The other way: the input is FHIR JSON (a Bundle or one resource); print the HL7v2
    /// message it maps back to (ADT^A08/A31 for a Patient, ORU^R01 for DiagnosticReports),
    /// one segment per line.
    #[arg(long, conflicts_with = "xml")]
    pub to_hl7v2: bool,
}

pub fn map(args: MapArgs) -> anyhow::Result<ExitCode> {
    let mapper = mapper(args.config.as_deref())?;
    let raw =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    if args.to_hl7v2 {
        let now =
            wyvern_core::hl7_timestamp(wyvern_core::Clock::now_millis(&wyvern_core::SystemClock));
        return match mapper.to_hl7v2(&raw, &now, "WYVERNMAP") {
            Ok(back) => {
                for w in &back.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", back.message.replace('\r', "\n"));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("not mapped: {e}");
                Ok(ExitCode::from(1))
            }
        };
    }
    let raw = wyvern_hl7::with_cr_segments(&raw);
    match mapper.map(&raw) {
        Ok(mapped) => {
            for w in &mapped.warnings {
                eprintln!("warning: {w}");
            }
            // What the record will not get: each field that, blanked, leaves the Bundle the same.
            if let Some(unused) = wyvern_fhir::unused(&mapper, &raw)
                && !unused.is_empty()
            {
                eprintln!("not used by the mapping: {}", unused.join(", "));
            }
            let json = serde_json::to_string_pretty(&mapped.value())?;
            if args.xml {
                let r = wyvern_fhir::model::from_json(&json).map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "{}",
                    wyvern_fhir::model::to_xml(&r).map_err(|e| anyhow::anyhow!("{e}"))?
                );
            } else {
                println!("{json}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("not mapped (a route would answer AR): {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The mapper a config's `map:` steps would use (its tables and field map over the built-in
/// ones), or the built-in one.
pub fn mapper(config: Option<&std::path::Path>) -> anyhow::Result<wyvern_fhir::Mapper> {
    let Some(dir) = config else {
        return wyvern_fhir::Mapper::with_defaults().map_err(|e| anyhow::anyhow!("{e}"));
    };
    let c = wyvern_config::load(dir).map_err(crate::validate::diagnostics)?;
    let mappings = wyvern_fhir::Mappings::load(&c.engine.mappings_dir, &c.tables)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(wyvern_fhir::Mapper::new(mappings))
}
