//! One backend call: POST JSON to `{URL}/{hook}` under a deadline, with a concurrency limit,
//! bounded retries, and every outcome counted with its latency.

use crate::backend_config::ProxyConfig;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Largest backend answer read, in bytes.
const MAX_ANSWER: usize = 1 << 20;
/// First pause between attempts (doubled each time).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The three backend hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `POST {URL}/connect`.
    Connect,
    /// `POST {URL}/event`.
    Event,
    /// `POST {URL}/disconnect`.
    Disconnect,
}

impl Hook {
    /// The path segment and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Event => "event",
            Hook::Disconnect => "disconnect",
        }
    }
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// No answer before the deadline (`--proxy-timeout`).
    #[error("the backend did not answer within the timeout")]
    Timeout,
    /// The backend could not be reached.
    #[error("the backend is unreachable: {0}")]
    Unavailable(String),
    /// The backend answered with an error status.
    #[error("the backend answered HTTP {0}")]
    Status(u16),
    /// The answer is not the JSON the hook expects.
    #[error("the backend's answer is invalid: {0}")]
    BadResponse(String),
    /// Every call slot was busy until the deadline (`--proxy-concurrency`).
    #[error("too many backend calls in flight")]
    Overloaded,
}

impl CallError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Unavailable(_) => "unavailable",
            CallError::Status(_) => "error_status",
            CallError::BadResponse(_) => "bad_response",
            CallError::Overloaded => "overloaded",
        }
    }
}

type HookLabel = [(&'static str, &'static str); 1];
type OutcomeLabel = [(&'static str, &'static str); 2];

/// Proxy metrics.
#[derive(Debug)]
pub struct ProxyMetrics {
    /// Calls by hook and outcome.
    pub calls: Family<OutcomeLabel, Counter>,
    /// Call latency by hook (retries included).
    pub duration: Family<HookLabel, Histogram>,
    /// Extra attempts by hook.
    pub retries: Family<HookLabel, Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            retries: Family::default(),
        }
    }
}

impl ProxyMetrics {
    /// Registers under the `proxy` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("proxy");
        r.register(
            "calls",
            "Backend calls, by hook and outcome",
            self.calls.clone(),
        );
        r.register(
            "call_duration_seconds",
            "Backend call latency, retries included, by hook",
            self.duration.clone(),
        );
        r.register(
            "retries",
            "Extra attempts of backend calls, by hook",
            self.retries.clone(),
        );
    }

    /// Counts one outcome.
    pub fn count(&self, hook: Hook, outcome: &'static str) {
        self.calls
            .get_or_create(&[("hook", hook.as_str()), ("outcome", outcome)])
            .inc();
    }
}

/// The HTTP client of the backend.
pub struct BackendClient {
    client: Client<HttpConnector, Full<Bytes>>,
    config: ProxyConfig,
    permits: Semaphore,
    /// Counters and latency.
    pub metrics: Arc<ProxyMetrics>,
}

impl BackendClient {
    /// A client for `config`.
    pub fn new(config: ProxyConfig, metrics: Arc<ProxyMetrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            permits: Semaphore::new(config.concurrency),
            config,
            metrics,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// POSTs `body` to the hook and returns the JSON answer (`{}` for an empty body). Only an
    /// unreachable backend is retried, except for `disconnect`, which is retried on any
    /// failure with the full timeout for each attempt. Counts the call's latency; the caller
    /// counts the outcome (it knows whether an answer means accept or reject).
    pub async fn call(&self, hook: Hook, body: &Value) -> Result<Value, CallError> {
        let started = Instant::now();
        let attempts = self.config.retries + 1;
        let per_call = match hook {
            Hook::Disconnect => self.config.timeout * attempts,
            _ => self.config.timeout,
        };
        let deadline = started + per_call;
        let result = self.attempts(hook, body, deadline, attempts).await;
        self.metrics
            .duration
            .get_or_create(&[("hook", hook.as_str())])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn attempts(
        &self,
        hook: Hook,
        body: &Value,
        deadline: Instant,
        attempts: u32,
    ) -> Result<Value, CallError> {
        let Ok(_permit) = tokio::time::timeout_at(deadline, self.permits.acquire()).await else {
            return Err(CallError::Overloaded);
        };
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let mut pause = RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let result =
                match tokio::time::timeout_at(deadline, self.once(hook, bytes.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(CallError::Timeout),
                };
            let retry = match &result {
                Ok(_) | Err(CallError::Timeout) => false,
                Err(CallError::Unavailable(_)) => true,
                Err(_) => hook == Hook::Disconnect,
            };
            if !retry || attempt >= attempts || Instant::now() + pause >= deadline {
                return result;
            }
            tracing::debug!(hook = hook.as_str(), attempt, error = ?result.err(), "backend call failed; retrying");
            self.metrics
                .retries
                .get_or_create(&[("hook", hook.as_str())])
                .inc();
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    async fn once(&self, hook: Hook, body: Bytes) -> Result<Value, CallError> {
        let uri = format!("{}/{}", self.config.url, hook.as_str());
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &self.config.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| CallError::BadResponse(format!("reading the body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError::Status(status.as_u16()));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(CallError::BadResponse("expected a JSON object".into())),
            Err(e) => Err(CallError::BadResponse(format!("not JSON: {e}"))),
        }
    }
}
