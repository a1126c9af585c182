//! JWT bearer authentication: HS256 with a shared secret, RS256/ES256 with a PEM public key or
//! keys from a JWKS URL. Issuer, audience, expiry and not-before are always checked.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use filestore_domain::OwnerId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::error::ApiError;

/// Claims Filestore reads; `sub` names the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    /// A string or an array of strings (RFC 7519 §4.1.3).
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no token verification is configured: give a JWT secret, a public key or a JWKS URL")]
    Missing,
    #[error("the public key is neither an RSA nor an EC PEM key")]
    BadPem,
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
}

enum Keys {
    Static(DecodingKey, Vec<Algorithm>),
    Jwks(JwksCache),
}

type KeysByKid = HashMap<String, (DecodingKey, Algorithm)>;

struct JwksCache {
    url: String,
    http: reqwest::Client,
    /// Keys by `kid`, and when they were last fetched.
    keys: RwLock<(KeysByKid, Option<Instant>)>,
    refresh: tokio::sync::Mutex<()>,
}

/// How often an unknown `kid` may trigger a JWKS refetch.
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);

impl JwksCache {
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        if let Some(k) = self.keys.read().await.0.get(kid) {
            return Ok(k.clone());
        }
        // One refresh at a time, and requests with known keys never wait behind it.
        let _refreshing = self.refresh.lock().await;
        let stale = {
            let cache = self.keys.read().await;
            !cache.0.contains_key(kid) && cache.1.is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN)
        };
        if stale {
            let fetched = self.fetch().await;
            let mut cache = self.keys.write().await;
            cache.1 = Some(Instant::now());
            match fetched {
                Ok(keys) => cache.0 = keys,
                Err(e) => tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed"),
            }
        }
        self.keys
            .read()
            .await
            .0
            .get(kid)
            .cloned()
            .ok_or_else(|| ApiError::invalid_token(format!("no signing key with id {kid:?}")))
    }

    async fn fetch(&self) -> Result<KeysByKid, String> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let declared = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let Some(alg) = declared.or_else(|| implied_algorithm(jwk)) else {
                continue;
            };
            if !ASYMMETRIC.contains(&alg) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                out.insert(kid, (key, alg));
            }
        }
        Ok(out)
    }
}

/// `alg` is optional in a JWK (some identity providers leave it out); the key type decides.
fn implied_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        _ => None,
    }
}

const ASYMMETRIC: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

pub struct Verifier {
    keys: Keys,
    issuer: String,
    audience: String,
}

impl Verifier {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        Self {
            keys: Keys::Static(DecodingKey::from_secret(secret), vec![Algorithm::HS256]),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn public_key_pem(
        pem: &[u8],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthConfigError> {
        let keys = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            Keys::Static(k, vec![Algorithm::RS256, Algorithm::RS384])
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            Keys::Static(k, vec![Algorithm::ES256, Algorithm::ES384])
        } else {
            return Err(AuthConfigError::BadPem);
        };
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    pub fn jwks(url: &str, issuer: &str, audience: &str) -> Self {
        Self {
            keys: Keys::Jwks(JwksCache {
                url: url.to_owned(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                keys: RwLock::new((HashMap::new(), None)),
                refresh: tokio::sync::Mutex::new(()),
            }),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut v = Validation::new(algorithms[0]);
        v.algorithms = algorithms.to_vec();
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = 30;
        v
    }

    /// The user a bearer token proves, or why it proves nothing.
    pub async fn verify(&self, token: &str) -> Result<OwnerId, ApiError> {
        let (key, algorithms) = match &self.keys {
            Keys::Static(k, algs) => (k.clone(), algs.clone()),
            Keys::Jwks(cache) => {
                let header = decode_header(token)
                    .map_err(|e| ApiError::invalid_token(describe(e.kind())))?;
                let kid = header
                    .kid
                    .ok_or_else(|| ApiError::invalid_token("token has no key id (kid)"))?;
                let (k, alg) = cache.key(&kid).await?;
                (k, vec![alg])
            }
        };
        let data = decode::<Claims>(token, &key, &self.validation(&algorithms))
            .map_err(|e| ApiError::invalid_token(describe(e.kind())))?;
        data.claims
            .sub
            .parse()
            .map_err(|_| ApiError::invalid_token("token subject is not a valid user name"))
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired".into(),
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "token signature is invalid".into(),
        ErrorKind::InvalidAudience => "token is for another audience".into(),
        ErrorKind::InvalidIssuer => "token is from another issuer".into(),
        ErrorKind::InvalidAlgorithm => {
            "token is signed with an algorithm this server does not accept".into()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
        other => format!("token is malformed: {other:?}"),
    }
}

/// The authenticated user of a request, in any router whose state holds a [`Verifier`].
#[derive(Debug, Clone)]
pub struct User(pub OwnerId);

impl<S> FromRequestParts<S> for User
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthenticated("an Authorization: Bearer token is required")
        })?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid_token("Authorization header is not ASCII"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must use the Bearer scheme")
            })?;
        let verifier = Arc::<Verifier>::from_ref(state);
        verifier.verify(token.trim()).await.map(User)
    }
}
