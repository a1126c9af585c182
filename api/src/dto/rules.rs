//! Schemas of the strings the server checks beyond their JSON type, written from the same rules
//! `crate::validate` and `filestore_domain::paths` enforce, so that the OpenAPI document refuses
//! what the server refuses and accepts what it accepts.
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use filestore_domain::paths::{MAX_COMPONENT_BYTES, MAX_PATH_BYTES};

/// A character a name may hold: not the separator, a control character, a backslash, U+FFFD,
/// or one of the characters Windows cannot hold in a name.
const NAME_CHAR: &str = r#"[^/\\\u0000-\u001f\u007f-\u009f\ufffd<>:"|?*]"#;
/// The last character of a name: as [`NAME_CHAR`], and not a dot or a space (which also rules
/// out the names `.` and `..`).
const LAST_CHAR: &str = r#"[^/\\\u0000-\u001f\u007f-\u009f\ufffd<>:"|?*. ]"#;
/// White space as Rust's `char::is_whitespace` (Unicode White_Space) knows it, which is what
/// `str::trim` removes.
const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// The device names Windows reserves, in any case; a name is reserved when the part before its
/// first dot, trailing white space removed, is one of them.
const RESERVED: &str =
    "(?:[Cc][Oo][Nn]|[Pp][Rr][Nn]|[Aa][Uu][Xx]|[Nn][Uu][Ll]|[Cc][Oo][Mm][1-9]|[Ll][Pp][Tt][1-9])";

/// One name of a path, anchored by what follows it (`/` or the end).
fn name() -> String {
    let rest = MAX_COMPONENT_BYTES - 1;
    format!(r"(?!{RESERVED}[{WHITE_SPACE}]*(?:\.[^/]*)?(?:/|$)){NAME_CHAR}{{0,{rest}}}{LAST_CHAR}")
}

/// A whole path: names joined by `/`, with an optional leading `/`.
pub fn path_pattern() -> String {
    let n = name();
    format!("^/?{n}(?:/{n})*$")
}

/// A listing prefix: empty, `/`, or the start of a path with an optional trailing `/`.
pub fn prefix_pattern() -> String {
    let n = name();
    format!("^/?(?:/|{n}(?:/{n})*/?)?$")
}

const PATH_RULES: &str = "Names are separated by `/` (a leading `/` is ignored) and compared \
    ignoring case and Unicode normalization (stored in NFC). A name is at most 255 bytes of \
    UTF-8 and a path at most 4,096; no name is `.` or `..`, holds a control character, `\\`, \
    U+FFFD or any of `< > : \" | ? *`, ends with a dot or a space, or is a device name Windows \
    reserves (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension). Anything else answers \
    400 `invalid_path`, `invalid_name` or `path_too_long`.";

/// A file (or folder) path as requests name it.
pub struct FilePath;

impl PartialSchema for FilePath {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_PATH_BYTES))
            .pattern(Some(path_pattern()))
            .description(Some(PATH_RULES))
            .examples(["photos/2024/cat.jpg"])
            .into()
    }
}

impl ToSchema for FilePath {}

/// What a listing's paths start with.
pub struct PathPrefix;

impl PartialSchema for PathPrefix {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_PATH_BYTES + 1))
            .pattern(Some(prefix_pattern()))
            .description(Some(
                "Empty (everything), or the start of a path following the path rules; \
                 `photos/` lists a folder's contents.",
            ))
            .examples(["photos/"])
            .into()
    }
}

impl ToSchema for PathPrefix {}

/// Comma-separated file ids.
pub struct IdList;

impl PartialSchema for IdList {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            // At least one id that is not empty once trimmed.
            .pattern(Some(format!("[^,{WHITE_SPACE}]")))
            .description(Some(
                "1 to 100 distinct file ids, comma-separated; white space around an id and \
                 empty or repeated ids are ignored.",
            ))
            .examples(["01930000-0000-7000-8000-000000000000"])
            .into()
    }
}

impl ToSchema for IdList {}

/// A SHA-256 in hex, either case.
pub struct Sha256Hex;

impl PartialSchema for Sha256Hex {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-fA-F]{64}$"))
            .examples(["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"])
            .into()
    }
}

impl ToSchema for Sha256Hex {}

/// Raw bytes: a file's or a chunk's content, or a bundle.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// A bundle of one five-byte file (`hello`) as its bytes, every one of them ASCII so that the
/// example reads the same as text: the manifest is padded with spaces to 288 bytes, whose
/// big-endian length prefix is `00 00 01 20`.
pub fn bundle_example() -> String {
    const LEN: usize = 0x120;
    let manifest = format!(
        r#"{{"files":[{{"fileId":"01930000-0000-7000-8000-000000000000","size":5,"sha256":"{}"}}]}}"#,
        hex::encode(filestore_domain::keys::sha256(b"hello"))
    );
    let prefix: String = (LEN as u32)
        .to_be_bytes()
        .iter()
        .map(|b| char::from(*b))
        .collect();
    format!("{prefix}{manifest:<LEN$}hello")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_example_is_a_bundle_of_hello() {
        let example = bundle_example();
        assert!(example.is_ascii());
        let parts = filestore_domain::bundle::decode(example.as_bytes()).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(&example.as_bytes()[parts[0].range.clone()], b"hello");
        assert_eq!(
            parts[0].item.sha256,
            hex::encode(filestore_domain::keys::sha256(b"hello"))
        );
    }
}
