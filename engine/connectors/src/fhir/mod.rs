//! The FHIR REST client of FHIR destinations (the shared care records' FHIR APIs): a Bundle
//! POSTed to the base, a resource created (`POST base/Type`) or updated (`PUT base/Type/id`),
//! over HTTPS (rustls with the system's roots plus any the route names), authorised by a
//! bearer token or OAuth2 ([`auth`]), and what the server's answer means for delivery — for a
//! batch, entry by entry ([`batch`]).

mod batch;

mod auth;

use std::sync::Arc;
use std::time::Duration;

use auth::TokenSource;
pub use auth::{FhirAuthSpec, OAuth2Spec};

/// How a FHIR server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirOutcome {
    /// 2xx: where it went (the Location header) or the status.
    Stored(String),
    /// 408, 429, 5xx, no answer, no token: try again later.
    Transient(String),
    /// Any other 4xx: the server refuses this content; the OperationOutcome text is kept.
    Refused(String),
}

/// Why a read ([`FhirClient::read`]) got no body. The texts never carry the URL's query (it
/// names a patient).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    /// No answer: refused, reset, timed out, no token.
    #[error("{0}")]
    Unreachable(String),
    /// A status other than 2xx, and the start of its body.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// The body would pass this many bytes.
    #[error("its answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The client's timeout passed first.
    #[error("no answer in time")]
    TimedOut,
}

/// What to do with a body: which FHIR interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// A transaction or batch Bundle, POSTed to the base.
    Bundle,
    /// `POST base/Type`: the server assigns the id.
    Create { resource_type: String },
    /// `PUT base/Type/id`: update (or create with this id).
    Update { resource_type: String, id: String },
}

impl Interaction {
    fn method_and_path(&self) -> (reqwest::Method, String) {
        match self {
            Interaction::Bundle => (reqwest::Method::POST, String::new()),
            Interaction::Create { resource_type } => {
                (reqwest::Method::POST, format!("/{resource_type}"))
            }
            Interaction::Update { resource_type, id } => {
                (reqwest::Method::PUT, format!("/{resource_type}/{id}"))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Bearer(String),
    OAuth2(Arc<TokenSource>),
}

/// What [`FhirClient::exchange`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The body, up to the limit asked for.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct FhirClient {
    base: String,
    auth: Auth,
    http: reqwest::Client,
}

impl FhirClient {
    /// `ca_pem`: extra trusted roots (PEM, one or more certificates).
    pub fn new(
        base: &str,
        auth: FhirAuthSpec,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<FhirClient, String> {
        crate::tls::install_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .https_only(base.starts_with("https://"));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the tls.ca file is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("the tls.ca file holds no certificate".into());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = match auth {
            FhirAuthSpec::None => Auth::None,
            FhirAuthSpec::Bearer(t) => Auth::Bearer(t),
            FhirAuthSpec::OAuth2(spec) => Auth::OAuth2(Arc::new(TokenSource::new(spec)?)),
        };
        Ok(FhirClient {
            base: base.trim_end_matches('/').to_string(),
            auth,
            http,
        })
    }

    /// `GET base{path}?{query}`: the body of a 2xx answer, read up to `limit` bytes (a larger
    /// one is refused as it arrives, so a member cannot fill memory). The bridge's reads.
    pub async fn read(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
    ) -> Result<Vec<u8>, ReadFailure> {
        let url = format!("{}{path}", self.base);
        let mut full = reqwest::Url::parse(&url)
            .map_err(|e| ReadFailure::Unreachable(format!("GET {url}: not a URL: {e}")))?;
        full.query_pairs_mut().extend_pairs(query);
        let req = self
            .http
            .get(full)
            .header("Accept", "application/fhir+json");
        let req = self
            .authorise(req)
            .await
            .map_err(ReadFailure::Unreachable)?;
        let mut resp = req.send().await.map_err(|e| {
            ReadFailure::Unreachable(format!("GET {url}: {}", chain(&e.without_url())))
        })?;
        let status = resp.status();
        if !status.is_success() {
            // The start of the body says why; a huge or endless one is not read to its end.
            let mut start = Vec::new();
            while start.len() < 4096
                && let Ok(Some(chunk)) = resp.chunk().await
            {
                start.extend_from_slice(&chunk);
            }
            let text: String = String::from_utf8_lossy(&start).chars().take(300).collect();
            return Err(ReadFailure::Status(status.as_u16(), text));
        }
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ReadFailure::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            ReadFailure::Unreachable(format!("GET {url}: {}", chain(&e.without_url())))
        })? {
            if body.len() + chunk.len() > limit {
                return Err(ReadFailure::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The server's base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method base{path}?{query}` with extra `headers` and a `body` (its content type, its
    /// bytes), for APIs that need more than [`FhirClient::send`] says (the NRL's headers and
    /// media type). Every status comes back for the caller to judge, with `Location` and the
    /// whole body; an error means no whole answer (none, one that broke off, or one larger
    /// than `limit` bytes: worth retrying). A 401 drops a cached OAuth2 token, so the next
    /// request fetches a new one.
    pub async fn exchange(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
        limit: usize,
    ) -> Result<Exchanged, String> {
        let url = format!("{}{path}", self.base);
        let mut full =
            reqwest::Url::parse(&url).map_err(|e| format!("{method} {url}: not a URL: {e}"))?;
        if !query.is_empty() {
            full.query_pairs_mut().extend_pairs(query);
        }
        let verb = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method} is not an HTTP method"))?;
        let mut req = self.http.request(verb, full);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("Content-Type", content_type).body(bytes);
        }
        let req = self.authorise(req).await?;
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {}", chain(&e.without_url())))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("{method} {url}: the answer broke off: {}", chain(&e)))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(format!(
                    "{method} {url}: the answer is larger than {limit} bytes"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status == 401
            && let Auth::OAuth2(source) = &self.auth
        {
            source.forget().await;
        }
        Ok(Exchanged {
            status,
            location,
            body: bytes,
        })
    }

    /// `req` with this server's credentials.
    async fn authorise(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::OAuth2(source) => req.bearer_auth(source.token(&self.http).await?),
        })
    }

    /// Performs `interaction` with `body` (FHIR JSON).
    pub async fn send(&self, interaction: &Interaction, body: Vec<u8>) -> FhirOutcome {
        let (method, path) = interaction.method_and_path();
        let url = format!("{}{path}", self.base);
        let req = self
            .http
            .request(method.clone(), &url)
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json")
            .body(body);
        let req = match self.authorise(req).await {
            Ok(req) => req,
            Err(e) => return FhirOutcome::Transient(e),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return FhirOutcome::Transient(format!("{method} {url}: {}", chain(&e))),
        };
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status.is_success() {
            let stored = location.unwrap_or_else(|| format!("HTTP {status}"));
            if *interaction != Interaction::Bundle {
                return FhirOutcome::Stored(stored);
            }
            // A batch answers 200 even when entries failed: each entry says for itself.
            let body = resp.bytes().await.unwrap_or_default();
            return match batch::failed_entries(&body) {
                None => FhirOutcome::Stored(stored),
                Some(outcome) => outcome,
            };
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(500).collect();
        let why = format!("HTTP {status} from {method} {url}: {text}");
        if status.as_u16() == 401
            && let Auth::OAuth2(source) = &self.auth
        {
            // The token was revoked or expired early: fetch a new one next time.
            source.forget().await;
        }
        classify(status.as_u16(), why)
    }
}

/// What an HTTP status means for a delivery. Authentication, authorisation and routing
/// failures (401, 403, 404, 405) are the destination's configuration — an expired token, a
/// proxy or base URL that is wrong — not the message's fault: retried (and visible in the log
/// and metrics) until fixed, instead of dead-lettering every message meanwhile.
pub fn classify(status: u16, why: String) -> FhirOutcome {
    match status {
        200..=299 => FhirOutcome::Stored(why),
        401 | 403 | 404 | 405 => FhirOutcome::Transient(format!(
            "{why} (is the destination's base URL or auth right?)"
        )),
        408 | 429 | 500..=599 => FhirOutcome::Transient(why),
        _ => FhirOutcome::Refused(why),
    }
}

/// An error with its causes (reqwest's own text hides why a TLS handshake failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
