//! Malware scanning behind a trait; the built-in scanner knows the EICAR test file and a
//! blocklist of SHA-256 digests. `clamd` slots in behind the same trait.
use std::collections::HashSet;

use async_trait::async_trait;
use filestore_ports::objects::ObjectReader;
use tokio::io::AsyncReadExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Infected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the object to scan failed: {0}")]
    Read(#[from] std::io::Error),
    #[error("the scanner is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Scanner: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Scans the object; `sha256_hex` is the digest of the whole object, already verified.
    async fn scan(
        &self,
        object: ObjectReader,
        size: u64,
        sha256_hex: &str,
    ) -> Result<Verdict, ScanError>;
}

/// The EICAR anti-malware test string.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_MAX_FILE: u64 = 128;

/// The EICAR convention: the file starts with the string, optionally followed by whitespace,
/// and is at most 128 bytes long.
pub fn is_eicar(whole_file: &[u8]) -> bool {
    whole_file.len() as u64 <= EICAR_MAX_FILE
        && whole_file.starts_with(EICAR)
        && whole_file[EICAR.len()..]
            .iter()
            .all(u8::is_ascii_whitespace)
}

#[derive(Debug, Default, Clone)]
pub struct BuiltinScanner {
    blocklist: HashSet<String>,
}

impl BuiltinScanner {
    pub fn new(blocklist: impl IntoIterator<Item = String>) -> Self {
        Self {
            blocklist: blocklist
                .into_iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Reads a blocklist file: one hex SHA-256 per line, `#` comments and blank lines ignored.
    pub fn from_blocklist_text(text: &str) -> Self {
        Self::new(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        )
    }
}

#[async_trait]
impl Scanner for BuiltinScanner {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn scan(
        &self,
        mut object: ObjectReader,
        size: u64,
        sha256_hex: &str,
    ) -> Result<Verdict, ScanError> {
        if self.blocklist.contains(&sha256_hex.to_ascii_lowercase()) {
            return Ok(Verdict::Infected("Blocklisted-SHA256".into()));
        }
        if size <= EICAR_MAX_FILE {
            let mut head = Vec::with_capacity(EICAR_MAX_FILE as usize);
            object
                .as_mut()
                .take(EICAR_MAX_FILE)
                .read_to_end(&mut head)
                .await?;
            if is_eicar(&head) {
                return Ok(Verdict::Infected("Eicar-Test-Signature".into()));
            }
        }
        Ok(Verdict::Clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reader(bytes: &'static [u8]) -> ObjectReader {
        Box::pin(bytes)
    }

    async fn verdict(s: &BuiltinScanner, bytes: &'static [u8]) -> Verdict {
        let sha = hex::encode(Sha256::digest(bytes));
        s.scan(reader(bytes), bytes.len() as u64, &sha)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn eicar_is_infected_and_ordinary_text_is_clean() {
        let s = BuiltinScanner::default();
        assert_eq!(
            verdict(&s, EICAR).await,
            Verdict::Infected("Eicar-Test-Signature".into())
        );
        assert_eq!(verdict(&s, b"hello").await, Verdict::Clean);
    }

    #[test]
    fn eicar_allows_trailing_whitespace_but_not_other_bytes() {
        let mut with_newline = EICAR.to_vec();
        with_newline.extend_from_slice(b"\r\n");
        assert!(is_eicar(&with_newline));
        let mut with_junk = EICAR.to_vec();
        with_junk.extend_from_slice(b"junk");
        assert!(!is_eicar(&with_junk));
        assert!(!is_eicar(&EICAR[1..]));
    }

    #[tokio::test]
    async fn blocklisted_digests_are_infected() {
        let sha = hex::encode(Sha256::digest(b"bad file"));
        let s = BuiltinScanner::from_blocklist_text(&format!(
            "# known bad\n\n{}\n",
            sha.to_uppercase()
        ));
        assert_eq!(
            verdict(&s, b"bad file").await,
            Verdict::Infected("Blocklisted-SHA256".into())
        );
        assert_eq!(verdict(&s, b"good file").await, Verdict::Clean);
    }
}
