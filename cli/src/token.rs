//! Minting HS256 development tokens.
use filestore_adapters::clock::now_secs;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

pub fn mint(
    secret: &str,
    issuer: &str,
    audience: &str,
    user: &str,
    ttl_secs: u64,
) -> anyhow::Result<String> {
    let now = now_secs();
    let claims = Claims {
        sub: user,
        iss: issuer,
        aud: audience,
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
    };
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
