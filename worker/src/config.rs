//! Worker settings: flags with environment fallbacks.
use std::time::Duration;

use clap::Args;
use filestore_domain::chunking::{ChunkParams, ChunkParamsError};
use filestore_domain::codec::CodecOptions;
use filestore_domain::messages::Stage;

#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Stages this process runs (comma-separated: scan, chunk, index).
    #[arg(
        long,
        env = "FILESTORE_STAGES",
        value_delimiter = ',',
        default_value = "scan,chunk,index"
    )]
    pub stages: Vec<Stage>,
    /// Messages each stage works on at once.
    #[arg(long, env = "FILESTORE_STAGE_CONCURRENCY", default_value_t = 2)]
    pub stage_concurrency: usize,
    /// Chunks of one file encoded and stored at once.
    #[arg(long, env = "FILESTORE_CHUNK_PARALLELISM", default_value_t = 4)]
    pub chunk_parallelism: usize,
    /// Deliveries of a message before its file is marked failed and the message parked.
    #[arg(long, env = "FILESTORE_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,
    /// Smallest chunk, bytes.
    #[arg(long, env = "FILESTORE_CHUNK_MIN", default_value_t = ChunkParams::DEFAULT.min)]
    pub chunk_min: u32,
    /// Target average chunk, bytes.
    #[arg(long, env = "FILESTORE_CHUNK_AVG", default_value_t = ChunkParams::DEFAULT.avg)]
    pub chunk_avg: u32,
    /// Largest chunk, bytes.
    #[arg(long, env = "FILESTORE_CHUNK_MAX", default_value_t = ChunkParams::DEFAULT.max)]
    pub chunk_max: u32,
    /// zstd level for chunk compression (1 is fast; 3 to 19 trade speed for size).
    #[arg(long, env = "FILESTORE_ZSTD_LEVEL", default_value_t = 1)]
    pub zstd_level: i32,
    /// Uploads not finalized within this many seconds are deleted with their bytes.
    #[arg(long, env = "FILESTORE_UPLOAD_EXPIRY", default_value_t = 24 * 3600)]
    pub upload_expiry_secs: u64,
    /// How often the janitor looks for abandoned uploads, seconds.
    #[arg(long, env = "FILESTORE_JANITOR_INTERVAL", default_value_t = 600)]
    pub janitor_interval_secs: u64,
    /// How often the chunk sweep looks for chunks nothing needs, seconds.
    #[arg(long, env = "FILESTORE_SWEEP_INTERVAL", default_value_t = 3600)]
    pub sweep_interval_secs: u64,
    /// Chunks used within this many seconds are never swept (also the allowance for clock
    /// skew between machines).
    #[arg(long, env = "FILESTORE_SWEEP_GRACE", default_value_t = 3600)]
    pub sweep_grace_secs: u64,
    /// How often a long job renews its claim on its message, milliseconds.
    #[arg(
        long,
        env = "FILESTORE_KEEP_ALIVE_MS",
        default_value_t = 5000,
        hide = true
    )]
    pub keep_alive_ms: u64,
    /// SHA-256 digests (hex) of files to quarantine, one per line, for the built-in scanner.
    #[arg(long, env = "FILESTORE_BLOCKLIST")]
    pub blocklist: Option<std::path::PathBuf>,
}

impl WorkerConfig {
    pub fn chunk_params(&self) -> Result<ChunkParams, ChunkParamsError> {
        ChunkParams::new(self.chunk_min, self.chunk_avg, self.chunk_max)
    }

    pub fn codec(&self) -> CodecOptions {
        CodecOptions {
            zstd_level: self.zstd_level,
        }
    }

    pub fn sweep_grace(&self) -> Duration {
        Duration::from_secs(self.sweep_grace_secs)
    }

    pub fn sweep_every(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs.max(1))
    }

    /// How often a long job renews its claim on its message.
    pub fn keep_alive_every(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms.max(1))
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            stages: Stage::ALL.to_vec(),
            stage_concurrency: 2,
            chunk_parallelism: 4,
            max_deliveries: 5,
            chunk_min: ChunkParams::DEFAULT.min,
            chunk_avg: ChunkParams::DEFAULT.avg,
            chunk_max: ChunkParams::DEFAULT.max,
            zstd_level: 1,
            keep_alive_ms: 5000,
            upload_expiry_secs: 24 * 3600,
            janitor_interval_secs: 600,
            sweep_interval_secs: 3600,
            sweep_grace_secs: 3600,
            blocklist: None,
        }
    }
}
