//! User-visible file paths: what a name may be, in one canonical form.
//!
//! A path is `/`-separated components, stored without a leading slash. Rules are strict so that
//! every path maps onto every client's filesystem and never names something outside a folder.

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
}

/// The canonical form of `raw`, or why it cannot be a file path.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
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
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
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
