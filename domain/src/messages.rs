//! Queue topology and the versioned message schema shared by every queue backend.
use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, FileId, OwnerId};

pub const EXCHANGE: &str = "filestore";
pub const SCHEMA_VERSION: u32 = 1;

pub mod routing {
    pub const FILE_UPLOADED: &str = "file.uploaded";
    pub const FILE_SCANNED: &str = "file.scanned";
    pub const CHUNK_CREATED: &str = "chunk.created";
}

/// A pipeline stage and the queue it consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Scan,
    Chunk,
    Index,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Scan, Stage::Chunk, Stage::Index];

    pub fn queue(self) -> &'static str {
        match self {
            Stage::Scan => "filestore.scan",
            Stage::Chunk => "filestore.chunk",
            Stage::Index => "filestore.index",
        }
    }

    /// The routing key the stage's queue is bound to.
    pub fn consumes(self) -> &'static str {
        match self {
            Stage::Scan => routing::FILE_UPLOADED,
            Stage::Chunk => routing::FILE_SCANNED,
            Stage::Index => routing::CHUNK_CREATED,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Chunk => "chunk",
            Stage::Index => "index",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("unknown stage {s:?}; expected scan, chunk or index"))
    }
}

/// The queues a message with this routing key lands in.
pub fn queues_for(routing_key: &str) -> Vec<&'static str> {
    Stage::ALL
        .into_iter()
        .filter(|s| s.consumes() == routing_key)
        .map(Stage::queue)
        .collect()
}

/// `file.uploaded` and `file.scanned`: a file to work on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMessage {
    pub v: u32,
    pub file_id: FileId,
    pub owner: OwnerId,
}

impl FileMessage {
    pub fn new(file_id: FileId, owner: OwnerId) -> Self {
        Self {
            v: SCHEMA_VERSION,
            file_id,
            owner,
        }
    }
}

/// One entry of a file's chunk manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub index: u32,
    pub offset: u64,
    pub length: u32,
    pub id: ChunkId,
    #[serde(with = "hex_32")]
    pub sha256: [u8; 32],
    pub stored_size: u64,
}

/// `chunk.created`: every chunk of a file is durably stored; index them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunksCreated {
    pub v: u32,
    pub file_id: FileId,
    pub owner: OwnerId,
    pub chunks: Vec<ChunkEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not valid JSON for its routing key: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message schema version {0} is not supported (this build reads {SCHEMA_VERSION})")]
    Version(u32),
}

/// Parses a message and checks its schema version.
pub fn parse<T: for<'de> Deserialize<'de> + Versioned>(body: &[u8]) -> Result<T, MessageError> {
    let msg: T = serde_json::from_slice(body)?;
    if msg.version() != SCHEMA_VERSION {
        return Err(MessageError::Version(msg.version()));
    }
    Ok(msg)
}

pub trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for FileMessage {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for ChunksCreated {
    fn version(&self) -> u32 {
        self.v
    }
}

pub mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_exactly_one_binding() {
        assert_eq!(queues_for(routing::FILE_UPLOADED), vec!["filestore.scan"]);
        assert_eq!(queues_for(routing::FILE_SCANNED), vec!["filestore.chunk"]);
        assert_eq!(queues_for(routing::CHUNK_CREATED), vec!["filestore.index"]);
        assert!(queues_for("nothing.here").is_empty());
    }

    #[test]
    fn messages_round_trip_and_reject_other_versions() {
        let m = FileMessage::new(FileId::new(), "alice".parse().unwrap());
        let body = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse::<FileMessage>(&body).unwrap(), m);
        let mut future = m.clone();
        future.v = 2;
        let body = serde_json::to_vec(&future).unwrap();
        assert!(matches!(
            parse::<FileMessage>(&body),
            Err(MessageError::Version(2))
        ));
        assert!(matches!(
            parse::<FileMessage>(b"{not json"),
            Err(MessageError::Malformed(_))
        ));
    }
}
