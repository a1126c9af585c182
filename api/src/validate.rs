//! Turning what a client sent into domain values, or a 4xx that says what is wrong.
use filestore_domain::paths::{PathError, normalize};
use filestore_domain::tree::Expect;
use filestore_domain::{FileId, OwnerId};
use filestore_ports::NewFile;

use crate::dto::RegisterFile;
use crate::error::{ApiError, ProblemCode};

pub fn size(n: &serde_json::Number, max: u64) -> Result<u64, ApiError> {
    let exact_float = || {
        n.as_f64()
            .and_then(crate::dto::whole::exact_integer)
            .and_then(|v| u64::try_from(v).ok())
    };
    let v = n.as_u64().or_else(exact_float).ok_or_else(|| {
        ApiError::new(
            ProblemCode::InvalidSize,
            format!("size must be a whole number of bytes >= 0, got {n}"),
        )
    })?;
    if v > max {
        return Err(ApiError::new(
            ProblemCode::FileTooLarge,
            format!("{v} bytes is over this server's limit of {max} bytes per file"),
        ));
    }
    Ok(v)
}

/// 64 hex digits, returned in lowercase.
pub fn sha256_hex(text: &str) -> Result<String, ApiError> {
    let ok = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(ApiError::new(
            ProblemCode::InvalidChecksum,
            "a SHA-256 must be 64 hexadecimal digits",
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// `sha256-<hex>` as finalize takes it.
pub fn checksum(text: &str) -> Result<String, ApiError> {
    let hex = text.strip_prefix("sha256-").ok_or_else(|| {
        ApiError::new(
            ProblemCode::InvalidChecksum,
            "checksum must look like sha256-<64 hex digits>",
        )
    })?;
    sha256_hex(hex)
}

pub fn content_type(ct: Option<&str>) -> Result<String, ApiError> {
    let Some(ct) = ct else {
        return Ok("application/octet-stream".into());
    };
    let ok = ct.len() <= 255 && ct.contains('/') && ct.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !ok {
        return Err(ApiError::new(
            ProblemCode::InvalidContentType,
            "contentType must be a MIME type such as text/plain",
        ));
    }
    Ok(ct.to_owned())
}

pub fn path(raw: &str) -> Result<String, ApiError> {
    normalize(raw).map_err(|e| {
        let code = match e {
            PathError::TooLong(_) | PathError::ComponentTooLong(_) => ProblemCode::PathTooLong,
            // A name Windows or macOS clients could not create (DESIGN invariant 8).
            PathError::Unportable(_) => ProblemCode::InvalidName,
            _ => ProblemCode::InvalidPath,
        };
        ApiError::new(code, e.to_string())
    })
}

/// A listing prefix: empty, or the start of a path (`docs/` for a folder's contents).
pub fn prefix(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
    let Some(stem) = trimmed
        .strip_suffix('/')
        .or(Some(trimmed))
        .filter(|s| !s.is_empty())
    else {
        return Ok(String::new());
    };
    let normal = path(stem)?;
    Ok(if trimmed.ends_with('/') {
        format!("{normal}/")
    } else {
        normal
    })
}

/// A client's `parentRev`: absent, 0 (create) or a revision it saw.
pub fn parent_rev(rev: Option<i64>) -> Result<Expect, ApiError> {
    match rev {
        Some(n) if n < 0 => Err(ApiError::new(
            ProblemCode::InvalidParentRev,
            format!("parentRev is a revision (>= 1) or 0 for a new file, got {n}"),
        )),
        other => Ok(Expect::from_parent_rev(other)),
    }
}

pub fn registration(
    owner: &OwnerId,
    req: &RegisterFile,
    max_size: u64,
) -> Result<NewFile, ApiError> {
    Ok(NewFile {
        id: FileId::new(),
        owner: owner.clone(),
        path: path(&req.path)?,
        size: size(&req.size, max_size)?,
        declared_sha256: req.sha256.as_deref().map(sha256_hex).transpose()?,
        content_type: content_type(req.content_type.as_deref())?,
        expect: parent_rev(req.parent_rev)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> serde_json::Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn sizes_must_be_whole_non_negative_and_within_the_limit() {
        assert_eq!(size(&num("0"), 10), Ok(0));
        // JSON Schema counts 7.0 as an integer; so does the server.
        assert_eq!(size(&num("7.0"), 10), Ok(7));
        assert_eq!(
            size(&num("-1"), 10).unwrap_err().code,
            ProblemCode::InvalidSize
        );
        assert_eq!(
            size(&num("-1.0"), 10).unwrap_err().code,
            ProblemCode::InvalidSize
        );
        assert_eq!(
            size(&num("1.5"), 10).unwrap_err().code,
            ProblemCode::InvalidSize
        );
        assert_eq!(
            size(&num("1e300"), 10).unwrap_err().code,
            ProblemCode::InvalidSize
        );
        assert_eq!(
            size(&num("11"), 10).unwrap_err().code,
            ProblemCode::FileTooLarge
        );
    }

    #[test]
    fn checksums_need_their_prefix_and_64_hex_digits() {
        let hex = "AB".repeat(32);
        assert_eq!(checksum(&format!("sha256-{hex}")), Ok("ab".repeat(32)));
        assert_eq!(
            checksum(&hex).unwrap_err().code,
            ProblemCode::InvalidChecksum
        );
        assert_eq!(
            checksum("sha256-abc").unwrap_err().code,
            ProblemCode::InvalidChecksum
        );
    }

    #[test]
    fn paths_map_to_their_own_codes() {
        assert_eq!(
            path("../../etc/passwd").unwrap_err().code,
            ProblemCode::InvalidPath
        );
        assert_eq!(
            path(&"x".repeat(300)).unwrap_err().code,
            ProblemCode::PathTooLong
        );
    }

    #[test]
    fn prefixes_are_empty_or_the_start_of_a_valid_path() {
        assert_eq!(prefix("").unwrap(), "");
        assert_eq!(prefix("/").unwrap(), "");
        assert_eq!(prefix("/docs/").unwrap(), "docs/");
        assert_eq!(prefix("docs/rep").unwrap(), "docs/rep");
        assert_eq!(prefix("../x/").unwrap_err().code, ProblemCode::InvalidPath);
    }

    #[test]
    fn parent_revs_are_absent_zero_or_a_revision() {
        assert_eq!(parent_rev(None), Ok(Expect::Any));
        assert_eq!(parent_rev(Some(0)), Ok(Expect::Absent));
        assert_eq!(parent_rev(Some(5)), Ok(Expect::Rev(5)));
        assert_eq!(
            parent_rev(Some(-1)).unwrap_err().code,
            ProblemCode::InvalidParentRev
        );
    }

    #[test]
    fn content_types_are_plain_mime_types() {
        assert_eq!(content_type(None).unwrap(), "application/octet-stream");
        assert!(content_type(Some("text/plain; charset=utf-8")).is_ok());
        assert_eq!(
            content_type(Some("nonsense")).unwrap_err().code,
            ProblemCode::InvalidContentType
        );
        assert_eq!(
            content_type(Some("text/\u{7}")).unwrap_err().code,
            ProblemCode::InvalidContentType
        );
    }
}
