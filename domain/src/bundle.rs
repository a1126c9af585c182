//! A bundle: the contents of several small registered files in one request body, so a folder
//! of ten thousand tiny files costs a hundred round trips, not twenty thousand.
//!
//! Layout: a 4-byte big-endian length `n`, `n` bytes of JSON manifest (`{"files": [...]}`,
//! each item the file's id, size and SHA-256 in hex), then every file's bytes, in manifest
//! order, with nothing before, between or after them.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleItem {
    pub file_id: String,
    pub size: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    files: Vec<BundleItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle ends before its manifest does")]
    Truncated,
    #[error("the bundle manifest is not valid JSON: {0}")]
    Manifest(String),
    #[error("the manifest declares {declared} bytes of content; the bundle holds {actual}")]
    Length { declared: u64, actual: u64 },
    #[error("the bundle names no files")]
    Empty,
}

/// One file's place in a decoded bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub item: BundleItem,
    pub range: std::ops::Range<usize>,
}

/// The bundle of `files` (each item with its bytes).
pub fn encode(files: &[(BundleItem, &[u8])]) -> Vec<u8> {
    let manifest = Manifest {
        files: files.iter().map(|(item, _)| item.clone()).collect(),
    };
    // A manifest of ids, numbers and hex digits always serializes.
    let json = serde_json::to_vec(&manifest).unwrap_or_default();
    let content: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    let mut out = Vec::with_capacity(4 + json.len() + content);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    for (_, bytes) in files {
        out.extend_from_slice(bytes);
    }
    out
}

/// The parts of `bundle`, each file's bytes located by range; the declared sizes must account
/// for every byte after the manifest, so a short or padded bundle stores nothing.
pub fn decode(bundle: &[u8]) -> Result<Vec<Part>, BundleError> {
    let (len, rest) = bundle
        .split_first_chunk::<4>()
        .ok_or(BundleError::Truncated)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(BundleError::Truncated);
    }
    let (json, content) = rest.split_at(len);
    let manifest: Manifest =
        serde_json::from_slice(json).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if manifest.files.is_empty() {
        return Err(BundleError::Empty);
    }
    let declared = manifest
        .files
        .iter()
        .try_fold(0u64, |sum, f| sum.checked_add(f.size));
    let actual = content.len() as u64;
    if declared != Some(actual) {
        return Err(BundleError::Length {
            declared: declared.unwrap_or(u64::MAX),
            actual,
        });
    }
    let start = bundle.len() - content.len();
    let mut at = start;
    Ok(manifest
        .files
        .into_iter()
        .map(|item| {
            // The sum matched the content length, so every size fits in usize.
            let end = at + item.size as usize;
            let part = Part {
                item,
                range: at..end,
            };
            at = end;
            part
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(id: &str, bytes: &[u8]) -> BundleItem {
        BundleItem {
            file_id: id.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(crate::keys::sha256(bytes)),
        }
    }

    #[test]
    fn a_bundle_gives_back_each_file_in_order() {
        let files: [(&str, &[u8]); 3] = [("a", b"first"), ("b", b""), ("c", b"third file")];
        let with_items: Vec<_> = files.iter().map(|(id, b)| (item(id, b), *b)).collect();
        let bundle = encode(&with_items);
        let parts = decode(&bundle).unwrap();
        assert_eq!(parts.len(), 3);
        for (part, (id, bytes)) in parts.iter().zip(files) {
            assert_eq!(part.item.file_id, id);
            assert_eq!(&bundle[part.range.clone()], bytes);
        }
    }

    #[test]
    fn content_longer_or_shorter_than_declared_is_refused() {
        let bundle = encode(&[(item("a", b"abc"), b"abc")]);
        let mut padded = bundle.clone();
        padded.push(0);
        assert!(matches!(decode(&padded), Err(BundleError::Length { .. })));
        assert!(matches!(
            decode(&bundle[..bundle.len() - 1]),
            Err(BundleError::Length { .. })
        ));
    }

    #[test]
    fn a_lying_manifest_length_and_bad_json_are_refused() {
        assert_eq!(decode(b"\x00\x00"), Err(BundleError::Truncated));
        assert_eq!(decode(b"\x00\x00\x01\x00{}"), Err(BundleError::Truncated));
        assert!(matches!(
            decode(b"\x00\x00\x00\x03{x}"),
            Err(BundleError::Manifest(_))
        ));
        assert_eq!(decode(&encode(&[])), Err(BundleError::Empty));
    }

    #[test]
    fn sizes_that_overflow_are_refused_not_wrapped() {
        let json = br#"{"files":[{"fileId":"a","size":18446744073709551615,"sha256":""},{"fileId":"b","size":2,"sha256":""}]}"#;
        let mut bundle = (json.len() as u32).to_be_bytes().to_vec();
        bundle.extend_from_slice(json);
        bundle.push(1);
        assert!(matches!(decode(&bundle), Err(BundleError::Length { .. })));
    }

    proptest! {
        #[test]
        fn any_files_round_trip(files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
            let with_items: Vec<_> = files
                .iter()
                .enumerate()
                .map(|(i, b)| (item(&i.to_string(), b), b.as_slice()))
                .collect();
            let bundle = encode(&with_items);
            let parts = decode(&bundle).unwrap();
            prop_assert_eq!(parts.len(), files.len());
            for (part, bytes) in parts.iter().zip(&files) {
                prop_assert_eq!(&bundle[part.range.clone()], bytes.as_slice());
            }
        }
    }
}
