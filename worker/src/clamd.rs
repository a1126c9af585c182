//! ClamAV's `clamd` behind the `Scanner` trait, over its INSTREAM protocol (TCP or a Unix
//! socket): the object is streamed in length-prefixed pieces, so nothing is staged on disk and
//! memory stays at one piece.
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use filestore_ports::objects::ObjectReader;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::scanner::{ScanError, Scanner, Verdict};

const PIECE: usize = 64 * 1024;
const REPLY_LIMIT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for ClamdAddress {
    type Err = String;
    /// `tcp://host:port`, `unix:///path/to/clamd.ctl`, or a bare `host:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err("unix:// needs a socket path".into());
            }
            return Ok(ClamdAddress::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        if hostport
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!(
                "{s:?} is not a clamd address; expected tcp://host:port or unix:///path"
            ));
        }
        Ok(ClamdAddress::Tcp(hostport.to_owned()))
    }
}

#[derive(Debug, Clone)]
pub struct ClamdScanner {
    address: ClamdAddress,
    /// Bytes sent per object; clamd refuses streams above its `StreamMaxLength`, so this must
    /// not exceed it. The rest of a larger object is not scanned (logged).
    max_stream: u64,
    timeout: Duration,
}

/// What clamd answered about one stream.
pub fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    let reply = reply.trim_end_matches(['\0', '\n', '\r']).trim();
    let body = reply.strip_prefix("stream:").unwrap_or(reply).trim();
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(signature) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected(signature.trim().to_owned()));
    }
    Err(ScanError::Unavailable(format!("clamd answered {reply:?}")))
}

impl ClamdScanner {
    pub fn new(address: ClamdAddress, max_stream: u64, timeout: Duration) -> Self {
        Self {
            address,
            max_stream,
            timeout,
        }
    }

    /// `PING` -> `PONG`: whether clamd is up and has its signatures loaded.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let reply = match &self.address {
            ClamdAddress::Tcp(a) => ping_over(TcpStream::connect(a).await?).await?,
            ClamdAddress::Unix(p) => ping_over(UnixStream::connect(p).await?).await?,
        };
        if reply.trim_end_matches('\0') == "PONG" {
            Ok(())
        } else {
            Err(ScanError::Unavailable(format!("clamd answered {reply:?}")))
        }
    }

    async fn scan_inner(&self, object: ObjectReader, size: u64) -> Result<Verdict, ScanError> {
        let unavailable = |e: std::io::Error| ScanError::Unavailable(format!("clamd: {e}"));
        let reply = match &self.address {
            ClamdAddress::Tcp(a) => {
                let conn = TcpStream::connect(a).await.map_err(unavailable)?;
                instream(conn, object, self.max_stream).await?
            }
            ClamdAddress::Unix(p) => {
                let conn = UnixStream::connect(p).await.map_err(unavailable)?;
                instream(conn, object, self.max_stream).await?
            }
        };
        if size > self.max_stream {
            tracing::warn!(
                size,
                scanned = self.max_stream,
                "object larger than the clamd stream limit; only its head was scanned"
            );
        }
        parse_reply(&reply)
    }
}

async fn ping_over<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S) -> Result<String, ScanError> {
    conn.write_all(b"zPING\0").await?;
    read_reply(&mut conn).await
}

async fn read_reply<S: AsyncRead + Unpin>(conn: &mut S) -> Result<String, ScanError> {
    let mut reply = Vec::new();
    let mut limited = conn.take(REPLY_LIMIT as u64);
    limited.read_to_end(&mut reply).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

async fn instream<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    mut object: ObjectReader,
    max_stream: u64,
) -> Result<String, ScanError> {
    conn.write_all(b"zINSTREAM\0").await?;
    let mut piece = vec![0u8; PIECE];
    let mut sent = 0u64;
    while sent < max_stream {
        let want = usize::try_from((max_stream - sent).min(PIECE as u64)).unwrap_or(PIECE);
        let n = object.read(&mut piece[..want]).await?;
        if n == 0 {
            break;
        }
        let len = u32::try_from(n).map_err(|_| ScanError::Unavailable("piece too big".into()))?;
        conn.write_all(&len.to_be_bytes()).await?;
        if let Err(e) = conn.write_all(&piece[..n]).await {
            // clamd closes the socket early when it refuses the stream; its reason is the reply.
            let reply = read_reply(&mut conn).await.unwrap_or_default();
            return Err(ScanError::Unavailable(format!(
                "clamd stopped reading ({e}): {reply:?}"
            )));
        }
        sent += n as u64;
    }
    conn.write_all(&0u32.to_be_bytes()).await?;
    conn.flush().await?;
    read_reply(&mut conn).await
}

#[async_trait]
impl Scanner for ClamdScanner {
    fn name(&self) -> &'static str {
        "clamd"
    }

    async fn scan(
        &self,
        object: ObjectReader,
        size: u64,
        _sha256_hex: &str,
    ) -> Result<Verdict, ScanError> {
        tokio::time::timeout(self.timeout, self.scan_inner(object, size))
            .await
            .map_err(|_| {
                ScanError::Unavailable(format!("clamd did not answer within {:?}", self.timeout))
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_verdicts() {
        assert_eq!(parse_reply("stream: OK\0").ok(), Some(Verdict::Clean));
        assert_eq!(
            parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND\0").ok(),
            Some(Verdict::Infected("Win.Test.EICAR_HDB-1".into()))
        );
        assert!(parse_reply("INSTREAM size limit exceeded. ERROR\0").is_err());
        assert!(parse_reply("").is_err());
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "tcp://127.0.0.1:3310".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            "unix:///run/clamd.ctl".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Unix("/run/clamd.ctl".into()))
        );
        assert!("clamd".parse::<ClamdAddress>().is_err());
        assert!("unix://".parse::<ClamdAddress>().is_err());
    }
}
