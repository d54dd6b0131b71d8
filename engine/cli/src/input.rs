//! Reading messages to send from files, folders or stdin, the way integration engineers keep
//! them: one per file, several per file, or FHS/BHS batches, often with LF line ends.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A message to send and where it came from.
#[derive(Debug, Clone)]
pub struct Input {
    pub origin: String,
    pub bytes: Vec<u8>,
}

/// Reads every input. Without `raw`, files are split into messages and segment ends become CR.
pub fn read_inputs(paths: &[PathBuf], raw: bool) -> anyhow::Result<Vec<Input>> {
    let paths: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        paths.to_vec()
    };
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            push(&mut out, "stdin", buf, raw);
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("reading folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && !is_hidden(f))
                .collect();
            files.sort();
            for f in files {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                push(&mut out, &f.display().to_string(), bytes, raw);
            }
        } else {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            push(&mut out, &p.display().to_string(), bytes, raw);
        }
    }
    Ok(out)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn push(out: &mut Vec<Input>, origin: &str, bytes: Vec<u8>, raw: bool) {
    if raw {
        out.push(Input {
            origin: origin.to_string(),
            bytes,
        });
        return;
    }
    match wyvern_hl7::messages_in_file(&bytes) {
        Some(messages) => {
            let many = messages.len() > 1;
            for (i, m) in messages.into_iter().enumerate() {
                let origin = if many {
                    format!("{origin}#{}", i + 1)
                } else {
                    origin.to_string()
                };
                out.push(Input { origin, bytes: m });
            }
        }
        // Not HL7 as far as we can tell: send it as it is and let the receiver say why.
        None => out.push(Input {
            origin: origin.to_string(),
            bytes,
        }),
    }
}
