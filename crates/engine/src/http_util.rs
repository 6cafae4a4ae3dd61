//! HTTP answers: Engine.IO error bodies and CORS headers.

use crate::config::{AllowOrigin, CorsConfig};
use crate::error::HttpError;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// The response body type of the engine.
pub type Body = Full<Bytes>;

pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let body = body.into();
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

pub(crate) fn error(err: HttpError) -> Response<Body> {
    let body = format!("{{\"code\":{},\"message\":\"{}\"}}", err.code(), err);
    text(err.status(), "application/json", body)
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

/// True when the `Origin` header is absent or allowed by `cors`.
pub(crate) fn origin_allowed(cors: Option<&CorsConfig>, headers: &HeaderMap) -> bool {
    origin_value_allowed(cors, headers.get(header::ORIGIN))
}

/// True when `origin` (a request's `Origin` value) is absent or allowed by `cors`.
fn origin_value_allowed(cors: Option<&CorsConfig>, origin: Option<&HeaderValue>) -> bool {
    let (Some(cors), Some(origin)) = (cors, origin) else {
        return true;
    };
    match &cors.origin {
        AllowOrigin::Any | AllowOrigin::Mirror => true,
        AllowOrigin::List(list) => origin
            .to_str()
            .map(|o| list.iter().any(|allowed| allowed == o))
            .unwrap_or(false),
    }
}

/// Adds CORS headers to `res` for a request whose `Origin` is `origin`.
pub(crate) fn apply_cors(
    cors: Option<&CorsConfig>,
    origin: Option<&HeaderValue>,
    res: &mut Response<Body>,
) {
    let Some(cors) = cors else { return };
    let h = res.headers_mut();
    match (&cors.origin, origin) {
        (AllowOrigin::Any, _) if !cors.credentials => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        // `HeaderValue` cannot hold CR/LF, so reflecting it cannot split the response.
        (_, Some(origin)) if origin_value_allowed(Some(cors), Some(origin)) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        _ => {}
    }
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The answer to a CORS preflight (`OPTIONS`).
pub(crate) fn preflight(cors: &CorsConfig, headers: &HeaderMap) -> Response<Body> {
    let mut res = empty(StatusCode::NO_CONTENT);
    apply_cors(Some(cors), headers.get(header::ORIGIN), &mut res);
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
    );
    if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        h.append(
            header::VARY,
            HeaderValue::from_static("Access-Control-Request-Headers"),
        );
    }
    if let Some(max_age) = cors.max_age {
        if let Ok(v) = HeaderValue::from_str(&max_age.as_secs().to_string()) {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_exact() {
        let res = error(HttpError::UnsupportedProtocolVersion);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let res = error(HttpError::Forbidden);
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
}
