//! Secrets of an embedded deployment, generated once into the data directory (mode 0600) so a
//! restart keeps reading the same files, tokens and chunks.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use filestore_domain::keys::SecretKey;

pub struct DataDirSecrets {
    pub master_key: SecretKey,
    pub master_key_id: String,
    pub jwt_secret: String,
    pub url_key: SecretKey,
}

pub fn secrets_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets")
}

pub fn jwt_secret_path(data_dir: &Path) -> PathBuf {
    secrets_dir(data_dir).join("jwt-secret")
}

/// Reads the file, or creates it with `make()` if it does not exist yet.
fn load_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(_) => {}
    }
    let value = make();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(value.as_bytes())?;
    f.sync_all()?;
    Ok(value)
}

pub fn load(
    data_dir: &Path,
    master_override: Option<(&str, &str)>,
) -> anyhow::Result<DataDirSecrets> {
    let dir = secrets_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (master_key_id, master_hex) = match master_override {
        Some((id, hex)) => (id.to_owned(), hex.to_owned()),
        None => (
            "local-1".to_owned(),
            load_or_create(&dir.join("master-key"), || SecretKey::random().to_hex())?,
        ),
    };
    let master_key = SecretKey::from_hex(&master_hex).context("the master key")?;
    let jwt_secret = load_or_create(&jwt_secret_path(data_dir), || SecretKey::random().to_hex())?;
    let url_key = SecretKey::from_hex(&load_or_create(&dir.join("url-signing-key"), || {
        SecretKey::random().to_hex()
    })?)
    .context("the URL signing key")?;
    Ok(DataDirSecrets {
        master_key,
        master_key_id,
        jwt_secret,
        url_key,
    })
}

pub fn read_jwt_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = jwt_secret_path(data_dir);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .with_context(|| {
            format!(
                "reading {} (has `filestore dev --data-dir {}` run yet?)",
                path.display(),
                data_dir.display()
            )
        })
}
