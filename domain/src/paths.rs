//! User-visible file paths: what a name may be, in one canonical form.
//!
//! A path is `/`-separated components, stored without a leading slash, in Unicode NFC. Rules
//! are strict so that every path maps onto every client's file system (Linux, macOS, Windows)
//! and never names something outside a folder (DESIGN invariants 7 and 8):
//!
//! - no `.` or `..` component, no empty component, no control character, no backslash;
//! - no name Windows cannot create: the characters `< > : " | ? *`, a trailing dot or space,
//!   or a reserved device name (`CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`, `LPT1`-`LPT9`, with
//!   or without an extension, in any case). These are refused, not mapped: a name that one
//!   client would have to rename is a name that two clients would disagree about.
//!
//! Uniqueness is decided by [`fold_key`]: two paths that differ only in case or Unicode
//! normalization are one file, as on macOS and Windows; the user's spelling is kept for display.
use unicode_normalization::UnicodeNormalization;

pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_COMPONENT_BYTES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is {0} bytes long; the limit is {MAX_PATH_BYTES}")]
    TooLong(usize),
    #[error("a path component is {0} bytes long; the limit is {MAX_COMPONENT_BYTES}")]
    ComponentTooLong(usize),
    #[error("path components '.' and '..' are not allowed")]
    DotComponent,
    #[error("path contains an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("path contains a control character or a backslash")]
    ForbiddenCharacter,
    #[error("{0}")]
    Unportable(&'static str),
    #[error("path is not in canonical form (Unicode NFC, no leading slash)")]
    NotCanonical,
}

/// Device names Windows reserves, whatever the extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Why Windows or macOS could not hold a file of this name, if one of them could not.
fn unportable(name: &str) -> Option<&'static str> {
    if name
        .chars()
        .any(|c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Some("a name may not contain < > : \" | ? * (Windows cannot hold it)");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("a name may not end with a dot or a space (Windows cannot hold it)");
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Some("CON, PRN, AUX, NUL, COM1-9 and LPT1-9 are reserved names on Windows");
    }
    None
}

/// The canonical form of `raw` (NFC, no leading slash), or why it cannot be a file path.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let stripped = raw.strip_prefix('/').unwrap_or(raw);
    let nfc: String = stripped.nfc().collect();
    let trimmed = nfc.as_str();
    if trimmed.is_empty() {
        return Err(PathError::Empty);
    }
    if trimmed.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(trimmed.len()));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == '\u{FFFD}')
    {
        return Err(PathError::ForbiddenCharacter);
    }
    for comp in trimmed.split('/') {
        match comp {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::DotComponent),
            c if c.len() > MAX_COMPONENT_BYTES => return Err(PathError::ComponentTooLong(c.len())),
            c => {
                if let Some(why) = unportable(c) {
                    return Err(PathError::Unportable(why));
                }
            }
        }
    }
    Ok(nfc)
}

/// Whether `path` is already canonical: what [`normalize`] would return unchanged.
pub fn is_canonical(path: &str) -> bool {
    normalize(path).is_ok_and(|n| n == path)
}

/// The key two spellings of one path share: case folded (Unicode lowercase) and NFC. Paths
/// with equal keys are one file; the store keeps the first spelling for display.
pub fn fold_key(path: &str) -> String {
    // Rust lowercases a word-final capital sigma to the final form; case folding has one sigma.
    let lower: String = path
        .nfc()
        .collect::<String>()
        .to_lowercase()
        .replace('\u{3c2}', "\u{3c3}");
    lower.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass_without_their_leading_slash() {
        assert_eq!(
            normalize("/photos/2024/cat.jpg").as_deref(),
            Ok("photos/2024/cat.jpg")
        );
        assert_eq!(
            normalize("notes ünïcode 日本.txt").as_deref(),
            Ok("notes ünïcode 日本.txt")
        );
    }

    #[test]
    fn traversal_and_oddities_are_rejected() {
        assert_eq!(normalize("../../etc/passwd"), Err(PathError::DotComponent));
        assert_eq!(normalize("a/./b"), Err(PathError::DotComponent));
        assert_eq!(normalize("a//b"), Err(PathError::EmptyComponent));
        assert_eq!(normalize("a/"), Err(PathError::EmptyComponent));
        assert_eq!(normalize(""), Err(PathError::Empty));
        assert_eq!(normalize("/"), Err(PathError::Empty));
        assert_eq!(normalize("a\0b"), Err(PathError::ForbiddenCharacter));
        assert_eq!(normalize("a\\..\\b"), Err(PathError::ForbiddenCharacter));
        assert_eq!(
            normalize("bad\u{FFFD}name"),
            Err(PathError::ForbiddenCharacter)
        );
        assert_eq!(normalize("line\nbreak"), Err(PathError::ForbiddenCharacter));
    }

    #[test]
    fn paths_come_out_in_nfc_and_decomposed_input_is_not_canonical() {
        let nfd = "norm/cafe\u{301}.txt";
        assert_eq!(normalize(nfd).as_deref(), Ok("norm/caf\u{e9}.txt"));
        assert!(!is_canonical(nfd));
        assert!(is_canonical("norm/caf\u{e9}.txt"));
        assert!(!is_canonical("/leading"));
    }

    #[test]
    fn names_windows_cannot_hold_are_refused() {
        for bad in [
            "CON",
            "con.txt",
            "docs/nul.txt",
            "Lpt9.log",
            "aux",
            "COM1.tar.gz",
            "a:b",
            "a*",
            "q?",
            "x<y",
            "x>y",
            "pipe|",
            "say\"hi\"",
            "trailing.",
            "trailing ",
            "dir./f",
        ] {
            assert!(
                matches!(normalize(bad), Err(PathError::Unportable(_))),
                "{bad:?} should be refused"
            );
        }
        for fine in [
            "console.txt",
            "CONTRACT",
            "com10",
            "nul-ish",
            "a.b.c",
            ".hidden",
            "x y",
        ] {
            assert!(normalize(fine).is_ok(), "{fine:?} should pass");
        }
    }

    #[test]
    fn spellings_that_differ_in_case_or_normalization_share_one_key() {
        assert_eq!(fold_key("Readme.txt"), fold_key("README.txt"));
        assert_eq!(
            fold_key("norm/cafe\u{301}.txt"),
            fold_key("NORM/CAF\u{c9}.TXT")
        );
        assert_eq!(fold_key("\u{130}stanbul"), fold_key("i\u{307}stanbul"));
        assert_eq!(
            fold_key("\u{391}\u{3a3}.txt"),
            fold_key("\u{391}\u{3c2}.txt"),
            "ΑΣ and Ας"
        );
        assert_ne!(fold_key("a.txt"), fold_key("b.txt"));
        assert_eq!(fold_key("Docs/A").split('/').count(), 2);
    }

    #[test]
    fn length_limits_hold_per_component_and_overall() {
        assert_eq!(
            normalize(&"a".repeat(256)),
            Err(PathError::ComponentTooLong(256))
        );
        assert!(normalize(&"a".repeat(255)).is_ok());
        let long = vec!["abcdefgh"; 600].join("/");
        assert!(matches!(normalize(&long), Err(PathError::TooLong(_))));
    }
}
