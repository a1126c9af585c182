//! A local file cut into chunks exactly as the server cuts it (same content-defined chunking,
//! same parameters), so both sides name the same pieces by their SHA-256: an upload sends only
//! the pieces the server lacks, and a download takes the pieces the old local copy has.
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use filestore_domain::chunking::{ChunkParams, StreamChunker};
use filestore_domain::keys::sha256;
use sha2::{Digest, Sha256};

const READ_BUF: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub length: u32,
    pub sha256: [u8; 32],
}

/// A file's pieces, and the SHA-256 of the whole.
#[derive(Debug, Clone)]
pub struct Pieces {
    pub path: PathBuf,
    pub pieces: Vec<Piece>,
    pub sha256: String,
}

impl Pieces {
    /// Cuts the file at `path` (blocking).
    pub fn of(path: &Path, params: ChunkParams) -> std::io::Result<Pieces> {
        let mut file = std::fs::File::open(path)?;
        let mut chunker = StreamChunker::new(params);
        let mut whole = Sha256::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut eof = false;
        let mut pieces = Vec::new();
        loop {
            while !eof && chunker.wants_more() {
                let want = chunker.room().clamp(1, READ_BUF);
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    eof = true;
                } else {
                    whole.update(&buf[..n]);
                    chunker.push(&buf[..n]);
                }
            }
            let Some(c) = chunker.next_chunk(eof) else {
                break;
            };
            pieces.push(Piece {
                offset: c.offset,
                length: u32::try_from(c.data.len()).map_err(std::io::Error::other)?,
                sha256: sha256(&c.data),
            });
        }
        Ok(Pieces {
            path: path.to_path_buf(),
            pieces,
            sha256: hex::encode(whole.finalize()),
        })
    }

    /// Where each piece can be read, by its SHA-256 (hex).
    pub fn by_sha(&self) -> HashMap<String, Piece> {
        self.pieces
            .iter()
            .map(|p| (hex::encode(p.sha256), *p))
            .collect()
    }

    /// The bytes of `piece`, read from the file again (blocking).
    pub fn read(&self, piece: &Piece) -> std::io::Result<Vec<u8>> {
        let file = std::fs::File::open(&self.path)?;
        let mut out = vec![0u8; piece.length as usize];
        file.read_exact_at(&mut out, piece.offset)?;
        if sha256(&out) != piece.sha256 {
            return Err(std::io::Error::other(format!(
                "{} changed while it was being sent",
                self.path.display()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_cuts_into_the_pieces_the_server_would_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let params = ChunkParams::new(16 * 1024, 64 * 1024, 256 * 1024).unwrap();
        let cut = Pieces::of(&path, params).unwrap();
        let reference = filestore_domain::chunking::cut_points(&data, params);
        let ours: Vec<(u64, usize)> = cut
            .pieces
            .iter()
            .map(|p| (p.offset, p.length as usize))
            .collect();
        assert_eq!(ours, reference);
        assert_eq!(cut.sha256, hex::encode(sha256(&data)));
        let p = cut.pieces[1];
        assert_eq!(
            cut.read(&p).unwrap(),
            data[p.offset as usize..][..p.length as usize]
        );
    }
}
