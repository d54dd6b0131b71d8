//! `--remote URL` on `inbox`, `dlq` and `replay`: the same commands against a running engine
//! elsewhere, through its operator API with a bearer token (`--token-file`, or
//! `WYVERN_TOKEN_FILE`). The engine checks the token's role and writes the audit record, with
//! the token's name, before it answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where a remote engine is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Talk to a running engine's operator API instead of reading a store, e.g.
    /// https://wyvern.example.nhs.uk:9465.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// A file holding the API token (from `wyvern api token create`).
    #[arg(
        long,
        env = "WYVERN_TOKEN_FILE",
        value_name = "FILE",
        requires = "remote"
    )]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// remote, beside the system's.
    #[arg(long, value_name = "PEM", requires = "remote")]
    pub remote_ca: Option<PathBuf>,
}

/// A connected API client.
#[derive(Debug)]
pub struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Remote {
    /// `None` when no `--remote` was given.
    pub fn from_args(args: &RemoteArgs) -> anyhow::Result<Option<Remote>> {
        let Some(base) = &args.remote else {
            return Ok(None);
        };
        let file = args
            .token_file
            .as_ref()
            .context("--remote needs --token-file (or WYVERN_TOKEN_FILE): the API token")?;
        let token = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?
            .trim()
            .to_string();
        wyvern_connectors::tls::install_provider();
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(ca) = &args.remote_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)? {
                builder = builder.add_root_certificate(c);
            }
        }
        Ok(Some(Remote {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: builder.build()?,
        }))
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, body)
    }

    /// One call; a non-2xx answer becomes an error carrying the engine's reason.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        // The CLI's commands are synchronous; this one waits for its answer on the runtime.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let resp = req
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                let status = resp.status();
                let text = resp.text().await?;
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                if !status.is_success() {
                    let reason = v["reason"].as_str().unwrap_or("(no reason given)");
                    bail!("{url}: {status}: {reason}");
                }
                Ok(v)
            })
        })
    }
}

/// `?a=1&b=2` from the parameters that are set (values percent-encoded).
pub fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON string field, or `-`.
pub fn text(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "-".into(),
    }
}
