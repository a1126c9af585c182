//! `filestore bench-bound <dir>`: the ceiling the ingest pipeline is measured against. The
//! work every stored byte needs (content-defined chunking, one SHA-256 per chunk, the chunk
//! codec's compression trial and compression, AES-256-GCM) done on every file of a folder in
//! one process on all cores, with the files read into memory first so no I/O is timed.
//! `bench/pipeline.sh` prints filestore's throughput as a fraction of it.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use filestore_domain::chunking::{ChunkParams, cut_points};
use filestore_domain::codec::{CodecOptions, encode_hashed};
use filestore_domain::keys::{TenantSecret, sha256};
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq)]
pub struct Bound {
    pub bytes: u64,
    pub files: usize,
    pub chunks: usize,
    pub stored_bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
}

/// Reads every regular file below `dir`, then times the pipeline's CPU work on them.
pub fn measure(dir: &Path, params: ChunkParams, codec: CodecOptions) -> anyhow::Result<Bound> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths)?;
    let contents = paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bytes = contents.iter().map(|c| c.len() as u64).sum::<u64>();
    let tenant = TenantSecret::random();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Files are taken one at a time from a shared cursor, so one large file cannot leave the
    // other cores idle at the end more than a file's worth.
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let per_thread = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let (mut chunks, mut stored) = (0usize, 0u64);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = contents.get(i) else {
                            return (chunks, stored);
                        };
                        for (offset, len) in cut_points(file, params) {
                            let start = offset as usize;
                            let plain = &file[start..start + len];
                            let encoded = encode_hashed(&tenant, plain, sha256(plain), codec);
                            chunks += 1;
                            stored += encoded.bytes.len() as u64;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((0, 0)))
            .collect::<Vec<_>>()
    });
    let seconds = started.elapsed().as_secs_f64();
    Ok(Bound {
        bytes,
        files: contents.len(),
        chunks: per_thread.iter().map(|t| t.0).sum(),
        stored_bytes: per_thread.iter().map(|t| t.1).sum(),
        seconds,
        mib_per_s: bytes as f64 / 1_048_576.0 / seconds.max(f64::EPSILON),
    })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_of_every_file_is_chunked_and_encoded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"hello").unwrap();
        let bound = measure(dir.path(), ChunkParams::default(), CodecOptions::default()).unwrap();
        assert_eq!((bound.bytes, bound.files), (300_005, 2));
        assert!(bound.chunks >= 2);
        // Runs of one byte compress to almost nothing; every chunk still carries its header.
        assert!(bound.stored_bytes > 0 && bound.stored_bytes < 300_005);
    }
}
