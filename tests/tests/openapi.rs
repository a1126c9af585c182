//! `/openapi.json` describes what the server answers (issue 15, finding 6). Schemathesis checks
//! the whole document against `filestore dev` (`scripts/schemathesis.sh`); these pin the cases
//! the issue names.
use filestore_tests::Service;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn document(svc: &Service) -> Value {
    let r = svc
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()
}

/// The schema `$ref` points at, within `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(
            doc,
            &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        ),
        None => schema,
    }
}

/// The required properties of a branch of `oneOf`, with those of its `allOf` parts.
fn required(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(doc, schema);
    let own = schema["required"].as_array().cloned().unwrap_or_default();
    let parts = schema["allOf"].as_array().cloned().unwrap_or_default();
    own.iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .chain(parts.iter().flat_map(|p| required(doc, p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_item_matches_the_refused_shape_only() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let r = svc
        .post_json(
            "/v1/files",
            &t,
            &json!({"files": [{"path": "", "size": 0}, {"path": "ok.txt", "size": 1}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let results = r.json()["results"].clone();
    let (refused, registered) = (&results[0], &results[1]);
    assert_eq!(refused["error"]["code"], "invalid_path");
    assert!(refused.get("fileId").is_none(), "{refused}");
    assert!(registered["fileId"].is_string(), "{registered}");
    assert_eq!(registered["error"], Value::Null);

    // The document's item is one of two shapes: a registration (its fields required, `error`
    // null) or a refusal (`index` and a problem). Before, a refused item had to carry a
    // registration's fields too.
    let doc = document(&svc).await;
    let item = &doc["components"]["schemas"]["BatchItem"];
    let branches = item["oneOf"].as_array().expect("BatchItem is oneOf");
    assert_eq!(branches.len(), 2);
    let shapes: Vec<Vec<String>> = branches.iter().map(|b| required(&doc, b)).collect();
    let fits = |value: &Value, needed: &[String]| needed.iter().all(|k| value.get(k).is_some());
    assert!(
        fits(registered, &shapes[0]) && !fits(refused, &shapes[0]),
        "{shapes:?}"
    );
    assert!(fits(refused, &shapes[1]), "{shapes:?}");
    assert_eq!(
        branches[1]["properties"]["error"]["$ref"],
        "#/components/schemas/Problem"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_documented_as_problem_documents_with_each_routes_statuses() {
    let svc = Service::start().await;
    let doc = document(&svc).await;
    let register = &doc["paths"]["/v1/file"]["post"]["responses"];
    for status in ["400", "401", "409", "413", "503", "507"] {
        let types: Vec<&String> = register[status]["content"]
            .as_object()
            .unwrap_or_else(|| panic!("POST /v1/file does not list {status}"))
            .keys()
            .collect();
        assert_eq!(types, ["application/problem+json"], "{status}");
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "code", "detail"] {
        assert!(
            problem["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!(field))),
            "{field}"
        );
    }
    // What a route answers, the document lists: a missing `path` query is 400 here.
    let t = svc.token("alice");
    let r = svc.get("/v1/entry", &t).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        doc["paths"]["/v1/entry"]["get"]["responses"]["400"].is_object(),
        "400 undocumented"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_the_constraints_and_limits_the_server_enforces() {
    let svc = Service::builder()
        .api(|a| {
            a.max_file_size = 4096;
            a.max_batch = 3;
        })
        .start()
        .await;
    let doc = document(&svc).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RegisterFile"]["properties"]["size"]["maximum"],
        4096
    );
    assert_eq!(
        schemas["RegisterBatch"]["properties"]["files"]["minItems"],
        1
    );
    assert_eq!(
        schemas["RegisterBatch"]["properties"]["files"]["maxItems"],
        3
    );
    assert!(schemas["FilePath"]["pattern"].is_string());
    assert_eq!(schemas["FilePath"]["minLength"], 1);
    let limit = doc["paths"]["/v1/tree"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .expect("limit parameter")
        .clone();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(10000))
    );

    // And the server holds to them: one byte over the stated maximum is refused...
    let t = svc.token("alice");
    let over = svc
        .post_json("/v1/file", &t, &json!({"path": "big", "size": 4097}))
        .await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large".into())
    );
    // ...and a whole number written as a float is the integer JSON Schema says it is.
    let whole = svc
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "whole.txt", "size": 7.0, "parentRev": 0.0}),
        )
        .await;
    assert_eq!(whole.status, StatusCode::CREATED, "{:?}", whole.json());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_media_type_has_a_binary_schema_and_an_example_the_server_takes() {
    let svc = Service::start().await;
    let doc = document(&svc).await;
    let body = &doc["paths"]["/v1/files/bundle"]["post"]["requestBody"]["content"]["application/vnd.filestore.bundle"];
    let schema = resolve(&doc, &body["schema"]);
    assert_eq!(
        (&schema["type"], &schema["format"]),
        (&json!("string"), &json!("binary"))
    );
    let example = body["example"]
        .as_str()
        .expect("an example")
        .as_bytes()
        .to_vec();
    let t = svc.token("alice");
    let r = svc
        .call(
            Method::POST,
            "/v1/files/bundle",
            Some(&t),
            Some(example),
            &[("content-type", "application/vnd.filestore.bundle")],
        )
        .await;
    // A well-formed bundle naming a file nobody registered: its item is refused, not the bundle.
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["results"][0]["error"]["code"], "not_found");
    svc.stop().await;
}
