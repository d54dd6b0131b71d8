//! The FHIR REST client of FHIR destinations (the shared care records' FHIR APIs): POST a
//! Bundle to the base, or a resource to `base/Type`, with an optional bearer token, and say
//! what the server's answer means for delivery.

use std::time::Duration;

/// How a FHIR server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirOutcome {
    /// 2xx: where it went (the Location header) or the status.
    Stored(String),
    /// 408, 429, 5xx, no answer: try again later.
    Transient(String),
    /// Any other 4xx: the server refuses this content; the OperationOutcome text is kept.
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct FhirClient {
    base: String,
    bearer: Option<String>,
    http: reqwest::Client,
}

impl FhirClient {
    pub fn new(
        base: &str,
        bearer: Option<String>,
        timeout: Duration,
    ) -> Result<FhirClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(FhirClient {
            base: base.trim_end_matches('/').to_string(),
            bearer,
            http,
        })
    }

    /// POSTs `body` (FHIR JSON) to the base (`resource_type` = Bundle) or to `base/Type`.
    pub async fn post(&self, resource_type: &str, body: Vec<u8>) -> FhirOutcome {
        let url = if resource_type == "Bundle" {
            self.base.clone()
        } else {
            format!("{}/{resource_type}", self.base)
        };
        let mut req = self
            .http
            .post(&url)
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json")
            .body(body);
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return FhirOutcome::Transient(format!("POST {url}: {e}")),
        };
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status.is_success() {
            return FhirOutcome::Stored(location.unwrap_or_else(|| format!("HTTP {status}")));
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(500).collect();
        let why = format!("HTTP {status} from {url}: {text}");
        match status.as_u16() {
            408 | 429 | 500..=599 => FhirOutcome::Transient(why),
            _ => FhirOutcome::Refused(why),
        }
    }
}
