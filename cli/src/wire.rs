//! Request bodies compressed for the wire. The server decodes `Content-Encoding: zstd` and
//! hashes, bounds and stores the decoded bytes, so compression changes only what travels.
const LEVEL: i32 = 3;
/// Bytes tried first, so incompressible data (media, archives, encrypted files) costs one
/// small attempt instead of a whole pass.
const PROBE: usize = 64 * 1024;

/// One file's bytes (or a piece of one) compressed, when that saves at least a sixteenth of
/// them; `None` means send them as they are. A file whose start does not compress is taken
/// to be incompressible throughout.
pub fn compress(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() > PROBE && !pays(&data[..PROBE]) {
        return None;
    }
    compress_mixed(data)
}

/// Like [`compress`], for a body that joins many files (a bundle): one incompressible file at
/// its start says nothing of the others, so the whole is always tried.
pub fn compress_mixed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 512 {
        return None;
    }
    let packed = zstd::bulk::compress(data, LEVEL).ok()?;
    worth(packed.len(), data.len()).then_some(packed)
}

fn pays(sample: &[u8]) -> bool {
    zstd::bulk::compress(sample, LEVEL).is_ok_and(|p| worth(p.len(), sample.len()))
}

fn worth(packed: usize, plain: usize) -> bool {
    packed + plain / 16 <= plain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize) -> Vec<u8> {
        use rand::{RngCore, SeedableRng};
        let mut out = vec![0u8; n];
        rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut out);
        out
    }

    #[test]
    fn text_is_sent_compressed_and_comes_back_whole() {
        let text = b"the quick brown fox jumps over the lazy dog\n".repeat(2000);
        let packed = compress(&text).expect("text compresses");
        assert!(packed.len() < text.len() / 4);
        assert_eq!(zstd::bulk::decompress(&packed, text.len()).unwrap(), text);
    }

    #[test]
    fn noise_and_tiny_bodies_are_sent_as_they_are() {
        assert_eq!(compress(&noise(200_000)), None);
        assert_eq!(compress(&noise(1000)), None);
        assert_eq!(compress(b"tiny"), None);
    }

    #[test]
    fn a_file_that_starts_incompressible_is_sent_plain_but_a_bundle_is_tried_whole() {
        let mut data = noise(PROBE);
        data.extend(std::iter::repeat_n(b'a', 4 * PROBE));
        assert_eq!(compress(&data), None);
        let packed = compress_mixed(&data).expect("the text after the noise compresses");
        assert!(packed.len() < 2 * PROBE);
    }
}
