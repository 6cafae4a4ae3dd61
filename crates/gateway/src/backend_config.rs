//! Options of the backend integration: the HTTP server API, the backend event proxy and logs.
//! Flattened into [`crate::config::Args`]; validated into [`BackendConfig`].

use clap::{Args, ValueEnum};
use http::{HeaderName, HeaderValue, Uri};
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Backend API, proxy and log options.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Bearer token of the HTTP server API under /api/v1/ on the admin listener. Unset: the
    /// API is off (404).
    #[arg(long, env = "SWITCHBOARD_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Largest API request body in bytes (larger: 413).
    #[arg(long, env = "SWITCHBOARD_API_MAX_BODY", default_value_t = 1 << 20)]
    pub api_max_body: usize,
    /// Backend base URL (http://host:port/path): the gateway POSTs {URL}/connect, {URL}/event
    /// and {URL}/disconnect. Unset: no backend proxy.
    #[arg(long, env = "SWITCHBOARD_PROXY_URL")]
    pub proxy_url: Option<String>,
    /// Time a backend call may take, retries included (e.g. 250ms, 5s).
    #[arg(long, env = "SWITCHBOARD_PROXY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub proxy_timeout: Duration,
    /// Extra attempts of a backend call that could not reach the backend (and of every failed
    /// disconnect report).
    #[arg(long, env = "SWITCHBOARD_PROXY_RETRIES", default_value_t = 2)]
    pub proxy_retries: u32,
    /// Most backend calls in flight at once (the rest wait, within their timeout).
    #[arg(long, env = "SWITCHBOARD_PROXY_CONCURRENCY", default_value_t = 256)]
    pub proxy_concurrency: usize,
    /// Events one socket may have waiting for the backend; more are answered with an error.
    #[arg(long, env = "SWITCHBOARD_PROXY_QUEUE", default_value_t = 64)]
    pub proxy_queue: usize,
    /// Header sent with every backend call, `NAME:VALUE` (repeatable), e.g. a shared secret.
    #[arg(
        long = "proxy-header",
        env = "SWITCHBOARD_PROXY_HEADERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub proxy_headers: Vec<String>,
    /// Client request headers passed to the connect hook (comma separated, case-insensitive).
    #[arg(
        long,
        env = "SWITCHBOARD_PROXY_FORWARD_HEADERS",
        value_delimiter = ',',
        default_value = "authorization,cookie,origin,user-agent,x-forwarded-for"
    )]
    pub proxy_forward_headers: Vec<String>,
    /// Log line format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing syntax, e.g. `info,switchboard_gateway=debug`); overrides RUST_LOG.
    #[arg(long = "log", env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
}

/// The backend proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// Deadline of one call, retries included.
    pub timeout: Duration,
    /// Extra attempts.
    pub retries: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Per-socket queue of events.
    pub queue: usize,
    /// Headers added to every call.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client headers passed to the connect hook (lowercase).
    pub forward_headers: Vec<HeaderName>,
}

/// The validated backend options.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// API bearer token; `None`: API off.
    pub api_token: Option<String>,
    /// Largest API body.
    pub api_max_body: usize,
    /// Backend proxy; `None`: off.
    pub proxy: Option<ProxyConfig>,
}

impl BackendArgs {
    /// Checks the options; the error names the flag.
    pub fn validate(self) -> Result<BackendConfig, String> {
        let api_token = self.api_token.clone().filter(|t| !t.trim().is_empty());
        if let Some(t) = &api_token {
            if t.len() < 16 {
                return Err(
                    "--api-token: use at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
                );
            }
        }
        if self.api_max_body == 0 {
            return Err("--api-max-body must be above 0".into());
        }
        let proxy = match self.proxy_url.clone().filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(url) => Some(self.proxy(url)?),
        };
        Ok(BackendConfig {
            api_token,
            api_max_body: self.api_max_body,
            proxy,
        })
    }

    fn proxy(&self, url: String) -> Result<ProxyConfig, String> {
        let url = url.trim().trim_end_matches('/').to_owned();
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--proxy-url {url:?}: {e}; give http://host:port/path"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "--proxy-url {url:?}: only http://host:port/path is supported (put a TLS sidecar in front of an https backend)"
            ));
        }
        if uri.query().is_some() {
            return Err(format!(
                "--proxy-url {url:?}: a base URL has no query string"
            ));
        }
        if self.proxy_timeout.is_zero() {
            return Err("--proxy-timeout must be above 0 (e.g. 5s)".into());
        }
        if self.proxy_concurrency == 0 || self.proxy_queue == 0 {
            return Err("--proxy-concurrency and --proxy-queue must be above 0".into());
        }
        if self.proxy_retries > 10 {
            return Err("--proxy-retries: at most 10".into());
        }
        let mut headers = Vec::new();
        for h in self.proxy_headers.iter().filter(|h| !h.trim().is_empty()) {
            let Some((name, value)) = h.split_once(':') else {
                return Err("--proxy-header: expected NAME:VALUE".into());
            };
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("--proxy-header: {:?} is not a header name", name.trim()))?;
            let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
                format!("--proxy-header {name}: the value is not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let forward_headers = self
            .proxy_forward_headers
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .map(|h| {
                HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("--proxy-forward-headers: {h:?} is not a header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ProxyConfig {
            url,
            timeout: self.proxy_timeout,
            retries: self.proxy_retries,
            concurrency: self.proxy_concurrency,
            queue: self.proxy_queue,
            headers,
            forward_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Args;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::BackendConfig, String> {
        let mut full = vec!["switchboard"];
        full.extend_from_slice(args);
        Args::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .backend
            .validate()
    }

    #[test]
    fn proxy_flags_are_checked() {
        let c = parse(&[
            "--proxy-url",
            "http://127.0.0.1:8000/hooks/",
            "--proxy-timeout",
            "250ms",
            "--proxy-header",
            "X-Secret:abc",
        ])
        .expect("valid");
        let p = c.proxy.expect("proxy on");
        assert_eq!(p.url, "http://127.0.0.1:8000/hooks");
        assert_eq!(p.timeout, std::time::Duration::from_millis(250));
        assert_eq!(p.headers[0].0.as_str(), "x-secret");
        let err = parse(&["--proxy-url", "https://x/"]).expect_err("https refused");
        assert!(err.contains("--proxy-url"), "{err}");
        let err = parse(&["--proxy-url", "http://x/", "--proxy-header", "nocolon"])
            .expect_err("bad header");
        assert!(err.contains("--proxy-header"), "{err}");
        assert!(parse(&["--proxy-timeout", "soon"]).is_err());
        let err = parse(&["--api-token", "short"]).expect_err("short token");
        assert!(err.contains("--api-token"), "{err}");
        assert!(parse(&[]).expect("valid").api_token.is_none());
    }
}
