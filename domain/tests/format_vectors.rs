//! The test vectors in docs/chunk-format.md hold for this implementation.
use std::collections::HashMap;

use filestore_domain::ChunkId;
use filestore_domain::codec::{CodecOptions, decode, encode};
use filestore_domain::keys::{Keyring, MasterKey, SecretKey, TenantSecret, WrappedSecret, sha256};

const DOC: &str = include_str!("../../docs/chunk-format.md");

fn vectors() -> HashMap<String, String> {
    let block = DOC
        .split("```vectors\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```vectors block in docs/chunk-format.md");
    block
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn tenant() -> TenantSecret {
    TenantSecret(SecretKey::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap())
}

fn bytes(v: &HashMap<String, String>, key: &str) -> Vec<u8> {
    hex::decode(&v[key]).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn check_vector(name: &str, plain: &[u8], must_reproduce: bool) {
    let v = vectors();
    let t = tenant();
    let h = sha256(plain);
    assert_eq!(hex::encode(h), v[&format!("{name}.sha256")]);
    let id = t.chunk_id(&h);
    assert_eq!(id.to_string(), v[&format!("{name}.id")]);
    let key = t.chunk_key(&h);
    assert_eq!(key.to_hex(), v[&format!("{name}.key")]);
    let stored = bytes(&v, &format!("{name}.stored"));
    let parsed: ChunkId = v[&format!("{name}.id")].parse().unwrap();
    assert_eq!(
        decode(&stored, &parsed, &key, &h, plain.len()).unwrap(),
        plain
    );
    if must_reproduce {
        assert_eq!(encode(&t, plain, CodecOptions::default()).bytes, stored);
    }
}

#[test]
fn the_raw_vector_is_reproduced_byte_for_byte() {
    let v = vectors();
    check_vector("raw", v["raw.plaintext_utf8"].as_bytes(), true);
}

#[test]
fn the_zstd_vector_decodes() {
    check_vector("zstd", &b"abcd".repeat(1024), false);
}

#[test]
fn the_wrapped_tenant_secret_unwraps() {
    let v = vectors();
    let master = SecretKey::from_hex(&v["wrap.master_key"]).unwrap();
    let ring = Keyring::new(MasterKey::new(&v["wrap.key_id"], master).unwrap(), vec![]);
    let wrapped = WrappedSecret {
        key_id: v["wrap.key_id"].clone(),
        blob: bytes(&v, "wrap.blob"),
    };
    let secret = ring
        .unwrap(&v["wrap.owner"].parse().unwrap(), &wrapped)
        .unwrap();
    assert_eq!(secret.0.to_hex(), v["wrap.secret"]);
}
