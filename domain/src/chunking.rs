//! Content-defined chunking (FastCDC 2020) over a stream, with bounded memory.
//!
//! FastCDC decides a cut from the bytes between a chunk's start and at most `max` bytes later, so
//! a chunk is emitted once `max` bytes are buffered past its start (or at end of input): the cuts
//! are then exactly those of a whole-file pass, and the buffer never holds more than ~2 × `max`.
use fastcdc::v2020::{
    AVERAGE_MAX, AVERAGE_MIN, FastCDC, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkParamsError {
    #[error("chunk sizes must satisfy min <= avg <= max, got {min}/{avg}/{max}")]
    Order { min: u32, avg: u32, max: u32 },
    #[error("{which} chunk size {value} is outside FastCDC's range {lo}..={hi}")]
    Range {
        which: &'static str,
        value: u32,
        lo: u32,
        hi: u32,
    },
}

impl ChunkParams {
    /// DESIGN §4's suggestion: 512 KiB / 2 MiB / 8 MiB.
    pub const DEFAULT: ChunkParams = ChunkParams {
        min: 512 * 1024,
        avg: 2 * 1024 * 1024,
        max: 8 * 1024 * 1024,
    };

    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, ChunkParamsError> {
        let check = |which, value, lo, hi| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(ChunkParamsError::Range {
                    which,
                    value,
                    lo,
                    hi,
                })
            }
        };
        check("min", min, MINIMUM_MIN, MINIMUM_MAX)?;
        check("avg", avg, AVERAGE_MIN, AVERAGE_MAX)?;
        check("max", max, MAXIMUM_MIN, MAXIMUM_MAX)?;
        if !(min <= avg && avg <= max) {
            return Err(ChunkParamsError::Order { min, avg, max });
        }
        Ok(Self { min, avg, max })
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One chunk cut from the stream: where it starts in the file, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Feed bytes with [`StreamChunker::push`], take chunks with [`StreamChunker::next_chunk`].
#[derive(Debug)]
pub struct StreamChunker {
    params: ChunkParams,
    buf: Vec<u8>,
    start: usize,
    offset: u64,
}

impl StreamChunker {
    pub fn new(params: ChunkParams) -> Self {
        Self {
            params,
            buf: Vec::with_capacity(2 * params.max as usize),
            start: 0,
            offset: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True while a chunk cannot be cut yet without knowing more of the stream.
    pub fn wants_more(&self) -> bool {
        self.buffered() < self.params.max as usize
    }

    /// How many more bytes the chunker takes before it has a decidable chunk.
    pub fn room(&self) -> usize {
        (self.params.max as usize).saturating_sub(self.buffered())
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.buf.len() + data.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next chunk whose end is decided; at `eof`, whatever remains.
    pub fn next_chunk(&mut self, eof: bool) -> Option<Chunk> {
        let pending = &self.buf[self.start..];
        if pending.is_empty() || (!eof && pending.len() < self.params.max as usize) {
            return None;
        }
        let p = self.params;
        let len = FastCDC::new(pending, p.min, p.avg, p.max)
            .next()
            .map_or(pending.len(), |c| c.length);
        let chunk = Chunk {
            offset: self.offset,
            data: pending[..len].to_vec(),
        };
        self.start += len;
        self.offset += len as u64;
        Some(chunk)
    }
}

/// Cut points `(offset, length)` of a whole buffer; the reference the streaming chunker matches.
pub fn cut_points(data: &[u8], p: ChunkParams) -> Vec<(u64, usize)> {
    FastCDC::new(data, p.min, p.avg, p.max)
        .map(|c| (c.offset as u64, c.length))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;
    use proptest::prelude::*;

    fn small() -> ChunkParams {
        ChunkParams::new(256, 1024, 4096).unwrap()
    }

    fn stream_cuts(data: &[u8], p: ChunkParams, piece: usize) -> Vec<(u64, usize)> {
        let mut c = StreamChunker::new(p);
        let mut out = Vec::new();
        for part in data.chunks(piece.max(1)) {
            c.push(part);
            while let Some(ch) = c.next_chunk(false) {
                out.push((ch.offset, ch.data.len()));
            }
        }
        while let Some(ch) = c.next_chunk(true) {
            out.push((ch.offset, ch.data.len()));
        }
        out
    }

    #[test]
    fn default_params_are_valid() {
        let d = ChunkParams::DEFAULT;
        assert_eq!(ChunkParams::new(d.min, d.avg, d.max), Ok(d));
    }

    #[test]
    fn params_out_of_order_or_range_are_rejected() {
        assert!(matches!(
            ChunkParams::new(4096, 1024, 8192),
            Err(ChunkParamsError::Order { .. })
        ));
        assert!(matches!(
            ChunkParams::new(1, 1024, 8192),
            Err(ChunkParamsError::Range { .. })
        ));
    }

    #[test]
    fn an_empty_stream_has_no_chunks() {
        assert!(stream_cuts(&[], small(), 10).is_empty());
    }

    #[test]
    fn an_insert_in_the_middle_changes_only_nearby_chunks() {
        let p = small();
        let data = pseudo_random(200_000, 7);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, *b"0123456789");
        let a: std::collections::HashSet<_> = cut_points(&data, p)
            .into_iter()
            .map(|(o, l)| data[o as usize..o as usize + l].to_vec())
            .collect();
        let new_chunks = cut_points(&edited, p)
            .into_iter()
            .filter(|&(o, l)| !a.contains(&edited[o as usize..o as usize + l]))
            .count();
        assert!(new_chunks <= 3, "{new_chunks} chunks changed");
    }

    proptest! {
        #[test]
        fn streaming_cuts_equal_whole_buffer_cuts(len in 0usize..40_000, seed: u64, piece in 1usize..10_000) {
            let data = pseudo_random(len, seed);
            prop_assert_eq!(stream_cuts(&data, small(), piece), cut_points(&data, small()));
        }

        #[test]
        fn chunks_tile_the_input_within_bounds(len in 1usize..40_000, seed: u64) {
            let p = small();
            let cuts = stream_cuts(&pseudo_random(len, seed), p, 3000);
            let mut next = 0u64;
            for (i, &(o, l)) in cuts.iter().enumerate() {
                prop_assert_eq!(o, next);
                prop_assert!(l <= p.max as usize);
                if i + 1 < cuts.len() { prop_assert!(l >= p.min as usize); }
                next += l as u64;
            }
            prop_assert_eq!(next, len as u64);
        }
    }
}
