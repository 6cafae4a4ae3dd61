//! Who may connect: a JWT (HS256 secret, RS/ES public key in PEM, or a JWKS file), the one
//! shared token of `--auth-token`, or nobody checked at all. A verified JWT gives the socket
//! its user (`sub`, room `user:<sub>`), its own join and publish patterns, and its expiry.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::{ConnectError, SocketRef};

/// How connections are authenticated.
#[derive(Clone)]
pub enum AuthMode {
    /// Anyone may connect (the node warns once at start).
    Anonymous,
    /// Every connection sends `auth: {token: <this>}`.
    SharedToken(String),
    /// Every connection presents a JWT verified with these keys.
    Jwt(std::sync::Arc<JwtVerifier>),
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::SharedToken(_) => f.write_str("SharedToken(<redacted>)"),
            Self::Jwt(v) => write!(f, "Jwt({} keys)", v.keys.len()),
        }
    }
}

/// The claims Switchboard reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch (required: the verifier refuses a token without it).
    pub exp: Option<u64>,
    /// Glob patterns of rooms the user may join.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Glob patterns of rooms the user may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
}

impl Claims {
    /// When the token stops being valid.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.exp.map(|exp| UNIX_EPOCH + Duration::from_secs(exp))
    }
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Verifies JWTs against a fixed set of keys; each key accepts only its own family of
/// algorithms, so an HS256 token can never be checked against an RSA public key.
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The `reason` of a refused token, as sent in the CONNECT_ERROR's `data.reason`.
pub type Reason = &'static str;

impl JwtVerifier {
    /// An HS256 shared secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::with_keys(vec![Key {
            kid: None,
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256],
        }])
    }

    /// An RSA (RS*/PS*) or EC P-256/P-384 (ES256/ES384) public key in PEM.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, String> {
        let key = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            Key {
                kid: None,
                key,
                algorithms: RSA_ALGS.to_vec(),
            }
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            Key {
                kid: None,
                key,
                algorithms: vec![Algorithm::ES256, Algorithm::ES384],
            }
        } else {
            return Err("not an RSA or EC public key in PEM (-----BEGIN PUBLIC KEY-----)".into());
        };
        Ok(Self::with_keys(vec![key]))
    }

    /// Every usable key of a JWKS document (RSA and EC keys; symmetric keys are refused).
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            use jsonwebtoken::jwk::AlgorithmParameters as P;
            let algorithms = match &jwk.algorithm {
                P::RSA(_) => RSA_ALGS.to_vec(),
                P::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                format!(
                    "key {:?}: {e}",
                    jwk.common.key_id.as_deref().unwrap_or("(no kid)")
                )
            })?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no RSA or EC key".into());
        }
        Ok(Self::with_keys(keys))
    }

    fn with_keys(keys: Vec<Key>) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
        }
    }

    /// Requires this `iss`.
    pub fn issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Requires this `aud`.
    pub fn audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Clock skew allowed on `exp` and `nbf`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Checks a token: signature, algorithm, `exp` (required), `nbf`, `iss`, `aud`.
    pub fn verify(&self, token: &str) -> Result<Claims, Reason> {
        // `alg: none` is refused by name: no key would accept it anyway, but the reason
        // should say so rather than "malformed".
        if header_alg(token).is_some_and(|alg| alg.eq_ignore_ascii_case("none")) {
            return Err("algorithm not allowed");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(
                if self.keys.iter().any(|k| k.algorithms.contains(&header.alg)) {
                    "unknown key id"
                } else {
                    "algorithm not allowed"
                },
            );
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway.as_secs();
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let mut last = "bad signature";
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => {
                    last = reason_of(err.kind());
                    if last != "bad signature" {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// The `alg` of a token's header, read without trusting anything else in it.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

fn reason_of(kind: &jsonwebtoken::errors::ErrorKind) -> Reason {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid",
        K::MissingRequiredClaim(c) if c == "exp" => "missing exp",
        K::MissingRequiredClaim(_) => "missing claim",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidAudience => "wrong audience",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            "algorithm not allowed"
        }
        K::Json(_) | K::InvalidClaimFormat(_) => "malformed claims",
        _ => "malformed token",
    }
}

/// The token a connection presents: `auth.token` in its CONNECT packet, else
/// `Authorization: Bearer ...` on its handshake request.
pub fn presented_token(socket: &SocketRef) -> Option<String> {
    let handshake = socket.handshake();
    if let Some(token) = handshake.auth.get("token").and_then(Value::as_str) {
        return Some(token.to_owned());
    }
    bearer(&handshake.headers).map(str::to_owned)
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any letter case).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let header = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The CONNECT_ERROR every refusal gets: message `unauthorized`, `data.reason` the check.
pub fn unauthorized(reason: Reason) -> ConnectError {
    ConnectError::new("unauthorized").with_data(json!({ "reason": reason }))
}

/// Compares secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    // `ct_eq` on slices of different lengths is false (only the length leaks).
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn hs(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[test]
    fn hs256_checks_each_claim() {
        let v = JwtVerifier::from_secret(b"s3cret")
            .issuer(Some("me".into()))
            .audience(Some("chat".into()))
            .leeway(Duration::ZERO);
        let good =
            json!({"sub": "u1", "exp": now() + 60, "iss": "me", "aud": "chat", "rooms": ["a:*"]});
        let claims = v.verify(&hs(good.clone(), "s3cret")).expect("valid");
        assert_eq!(claims.sub.as_deref(), Some("u1"));
        assert_eq!(claims.rooms, vec!["a:*".to_owned()]);
        assert_eq!(
            v.verify(&hs(good.clone(), "other")).err(),
            Some("bad signature")
        );
        let mut c = good.clone();
        c["exp"] = json!(now() - 10);
        assert_eq!(v.verify(&hs(c, "s3cret")).err(), Some("token expired"));
        let mut c = good.clone();
        c.as_object_mut().map(|o| o.remove("exp"));
        assert_eq!(v.verify(&hs(c, "s3cret")).err(), Some("missing exp"));
        let mut c = good.clone();
        c["iss"] = json!("them");
        assert_eq!(v.verify(&hs(c, "s3cret")).err(), Some("wrong issuer"));
        let mut c = good;
        c["aud"] = json!("other");
        assert_eq!(v.verify(&hs(c, "s3cret")).err(), Some("wrong audience"));
        assert_eq!(v.verify("not.a.token").err(), Some("malformed token"));
    }

    #[test]
    fn expiry_edge_cases_are_refused() {
        let v = JwtVerifier::from_secret(b"s3cret").leeway(Duration::ZERO);
        let t = |claims: Value| v.verify(&hs(claims, "s3cret")).err();
        assert_eq!(t(json!({"exp": now() - 1})), Some("token expired"));
        assert_eq!(t(json!({"exp": now() - 61})), Some("token expired"));
        assert!(t(json!({"exp": (now() + 60).to_string()})).is_some());
        assert!(t(json!({"exp": (now() + 60) as f64 + 0.5})).is_some());
        assert_eq!(
            t(json!({"exp": now() + 600, "nbf": now() + 300})),
            Some("token not yet valid")
        );
        assert_eq!(
            t(json!({"exp": now() + 60, "rooms": "x"})),
            Some("malformed claims")
        );
        let lenient = JwtVerifier::from_secret(b"s3cret").leeway(Duration::from_secs(30));
        assert!(lenient
            .verify(&hs(json!({"exp": now() - 5}), "s3cret"))
            .is_ok());
    }

    #[test]
    fn alg_none_is_refused_by_name() {
        use base64::Engine as _;
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let token = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"sub": "x", "exp": now() + 60}))
        );
        let v = JwtVerifier::from_secret(b"s3cret");
        assert_eq!(v.verify(&token).err(), Some("algorithm not allowed"));
        for alg in ["None", "NONE", "nOnE"] {
            let token = format!(
                "{}.{}.",
                b64(json!({"alg": alg})),
                b64(json!({"exp": now() + 60}))
            );
            assert_eq!(
                v.verify(&token).err(),
                Some("algorithm not allowed"),
                "{alg}"
            );
        }
    }
}
