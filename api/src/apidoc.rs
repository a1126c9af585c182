//! What the OpenAPI document says of every route of a kind, written once: errors are
//! `application/problem+json`; an authenticated route answers 401, a route with a body 408
//! and 413, a route that reads the store 503. Each handler's `#[utoipa::path]` lists the
//! statuses only it answers.
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response};

use crate::dto::rules::bundle_example;
use crate::routes::bundle::BUNDLE_MEDIA_TYPE;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Shared responses and the problem media type; see the module documentation.
pub struct SharedResponses;

impl utoipa::Modify for SharedResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                add_shared(path, op);
                for response in op.responses.responses.iter_mut() {
                    if let (status, RefOr::T(r)) = response {
                        as_problem(status, r);
                    }
                }
            }
        }
    }
}

fn add_shared(path: &str, op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let queried = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    };
    if secured {
        add(
            "401",
            "`unauthenticated`: no bearer token; `invalid_token`: a token this server does not accept.",
        );
    }
    if queried {
        add(
            "400",
            "`invalid_request`: the query is not what this route takes.",
        );
    }
    if op.request_body.is_some() {
        add(
            "400",
            "`invalid_request`: the body is not what this route takes.",
        );
        add(
            "408",
            "`request_timeout`: the body stopped arriving; the connection closes.",
        );
        add(
            "413",
            "`body_too_large`: the body is over what this route accepts.",
        );
    }
    // Every /v1 route but the chunking parameters reads the metadata store or object storage.
    if path.starts_with("/v1/") && path != "/v1/chunking" {
        add(
            "503",
            "`database_unavailable` or `storage_unavailable`: a backend is down; retry after `Retry-After` seconds.",
        );
    }
}

/// An error response: its body is a problem document, whatever the handler's attribute said.
fn as_problem(status: &str, r: &mut Response) {
    let Ok(code) = status.parse::<u16>() else {
        return;
    };
    if code < 400 {
        return;
    }
    r.content.clear();
    r.content.insert(
        PROBLEM_JSON.to_owned(),
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    let header = |description: &str, schema: Type| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(schema))
            .description(Some(description))
            .build()
    };
    match code {
        401 => {
            r.headers
                .insert("WWW-Authenticate".into(), header("`Bearer`", Type::String));
        }
        503 => {
            r.headers.insert(
                "Retry-After".into(),
                header("Seconds to wait before retrying.", Type::Integer),
            );
        }
        _ => {}
    }
}

/// The bundle route's example: a real bundle.
pub struct BundleExample;

impl utoipa::Modify for BundleExample {
    fn modify(&self, doc: &mut OpenApi) {
        let body = doc
            .paths
            .paths
            .get_mut("/v1/files/bundle")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
            .and_then(|body| body.content.get_mut(BUNDLE_MEDIA_TYPE));
        if let Some(content) = body {
            content.example = Some(bundle_example().into());
        }
    }
}

/// Limits the document states that are this server's settings, not constants.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_batch: usize,
    pub max_assemble_chunks: usize,
    pub max_chunk: u32,
}

/// Writes `limits` into the schemas that state them.
pub fn apply_limits(doc: &mut OpenApi, limits: Limits) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for (schema, field) in [("RegisterFile", "size"), ("FinalizeRequest", "size")] {
        if let Some(Schema::Object(o)) = property(components.schemas.get_mut(schema), field) {
            o.maximum = Some(limits.max_file_size.into());
        }
    }
    if let Some(Schema::Array(a)) = property(components.schemas.get_mut("RegisterBatch"), "files") {
        a.max_items = Some(limits.max_batch);
    }
    if let Some(Schema::Array(a)) = property(components.schemas.get_mut("Assembly"), "chunks") {
        a.max_items = Some(limits.max_assemble_chunks);
    }
    if let Some(Schema::Object(o)) = property(components.schemas.get_mut("ChunkRef"), "length") {
        o.maximum = Some(limits.max_chunk.into());
    }
}

fn property<'a>(schema: Option<&'a mut RefOr<Schema>>, name: &str) -> Option<&'a mut Schema> {
    match schema? {
        RefOr::T(Schema::Object(o)) => match o.properties.get_mut(name)? {
            RefOr::T(s) => Some(s),
            RefOr::Ref(_) => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::path::PathItem;

    use super::*;
    use crate::ApiConfig;

    fn operations(item: &PathItem) -> impl Iterator<Item = &Operation> {
        [&item.get, &item.put, &item.post, &item.delete, &item.patch]
            .into_iter()
            .flatten()
    }

    fn statuses(op: &Operation) -> Vec<&str> {
        op.responses.responses.keys().map(String::as_str).collect()
    }

    #[test]
    fn every_error_is_a_problem_document() {
        let doc = crate::openapi();
        for (path, item) in &doc.paths.paths {
            for op in operations(item) {
                for (status, response) in &op.responses.responses {
                    let RefOr::T(response) = response else {
                        panic!("{path} {status}: a reference");
                    };
                    if status.parse::<u16>().is_ok_and(|s| s >= 400) {
                        let types: Vec<_> = response.content.keys().collect();
                        assert_eq!(types, [PROBLEM_JSON], "{path} {status}");
                    }
                    assert!(!response.description.is_empty(), "{path} {status}");
                }
            }
        }
    }

    #[test]
    fn routes_list_the_answers_every_route_of_their_kind_gives() {
        let doc = crate::openapi();
        for (path, item) in &doc.paths.paths {
            for op in operations(item) {
                let has = statuses(op);
                if op.security.is_some() {
                    assert!(has.contains(&"401"), "{path}: {has:?}");
                }
                if op.request_body.is_some() {
                    for status in ["400", "408", "413"] {
                        assert!(has.contains(&status), "{path}: {has:?}");
                    }
                }
                if path.starts_with("/v1/") && path != "/v1/chunking" {
                    assert!(has.contains(&"503"), "{path}: {has:?}");
                }
            }
        }
    }

    #[test]
    fn the_document_states_this_servers_limits() {
        let config = ApiConfig {
            max_file_size: 1000,
            max_batch: 7,
            ..ApiConfig::default()
        };
        let doc = serde_json::to_value(crate::openapi_for(
            &config,
            filestore_domain::chunking::ChunkParams::DEFAULT,
        ))
        .unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["RegisterFile"]["properties"]["size"]["maximum"],
            1000
        );
        assert_eq!(
            schemas["FinalizeRequest"]["properties"]["size"]["maximum"],
            1000
        );
        assert_eq!(
            schemas["RegisterBatch"]["properties"]["files"]["maxItems"],
            7
        );
        assert_eq!(
            schemas["RegisterBatch"]["properties"]["files"]["minItems"],
            1
        );
    }
}
