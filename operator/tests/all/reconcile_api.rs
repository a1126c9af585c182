//! A full reconcile against a mocked API server (kube's `Client` over a tower-test service):
//! exactly the expected reads, server-side applies, status patch and events; errors from the
//! server become typed errors and requeues; deletion runs the finalizer. Every request a
//! reconcile makes must be one the chart's RBAC allows.
use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use filestore_operator::crd::FileStore;
use filestore_operator::queue_depth::{DepthError, QueueProbe, QueueStats};
use filestore_operator::reconcile::{self, Context, Error, FINALIZER};
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use support::Fixture;

/// One request the operator made.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The cluster as the fake API server sees it: objects by path, pods to list, and failures to
/// inject by (method, path).
#[derive(Default, Clone)]
struct Cluster {
    objects: BTreeMap<String, Value>,
    pods: Vec<Value>,
    failures: BTreeMap<(Method, String), StatusCode>,
}

const NS: &str = "/api/v1/namespaces/prod";
const APPS: &str = "/apis/apps/v1/namespaces/prod";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/prod/events";
const FILESTORES: &str = "/apis/filestore.dev/v1alpha1/namespaces/prod/filestores/files";

fn status_body(code: StatusCode, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{reason} (injected)"), "reason": reason, "code": code.as_u16()})
}

fn respond(cluster: &Cluster, fs: &Value, call: &Call) -> (StatusCode, Value) {
    if let Some(code) = cluster
        .failures
        .get(&(call.method.clone(), call.path.clone()))
    {
        let reason = if *code == StatusCode::CONFLICT {
            "Conflict"
        } else {
            "Forbidden"
        };
        return (*code, status_body(*code, reason));
    }
    match call.method {
        Method::GET if call.path == format!("{NS}/pods") => (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": cluster.pods}),
        ),
        Method::GET => match cluster.objects.get(&call.path) {
            Some(o) => (StatusCode::OK, o.clone()),
            None => (
                StatusCode::NOT_FOUND,
                status_body(StatusCode::NOT_FOUND, "NotFound"),
            ),
        },
        Method::PATCH if call.path.starts_with(FILESTORES) => {
            // Finalizer JSON patches and status applies both answer with the FileStore.
            let mut out = fs.clone();
            if call.content_type.contains("json-patch") {
                let mut finalizers: Vec<Value> = Vec::new();
                for op in call.body.as_array().into_iter().flatten() {
                    if op["op"] == "add" {
                        finalizers = op["value"].as_array().cloned().unwrap_or_default();
                    }
                }
                out["metadata"]["finalizers"] = Value::Array(finalizers);
            } else if let Some(status) = call.body.get("status") {
                out["status"] = status.clone();
            }
            (StatusCode::OK, out)
        }
        Method::PATCH => {
            let mut out = call.body.clone();
            if out.get("metadata").is_some() && out["metadata"].get("name").is_none() {
                out["metadata"]["name"] = call.path.rsplit('/').next().unwrap_or_default().into();
            }
            if out.get("kind").is_none() {
                out = cluster.objects.get(&call.path).cloned().unwrap_or(out);
            }
            (StatusCode::OK, out)
        }
        Method::POST => (StatusCode::CREATED, call.body.clone()),
        Method::DELETE => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ => (StatusCode::METHOD_NOT_ALLOWED, Value::Null),
    }
}

/// A queue probe that answers with fixed stats: the broker is a collaborator here (the real
/// probe is exercised against RabbitMQ in the tests crate).
struct Depths(Option<BTreeMap<String, QueueStats>>);

#[async_trait]
impl QueueProbe for Depths {
    async fn depths(
        &self,
        _url: &str,
        _queues: &[&str],
    ) -> Result<BTreeMap<String, QueueStats>, DepthError> {
        self.0
            .clone()
            .ok_or_else(|| DepthError("connection refused".into()))
    }
}

struct Run {
    result: Result<Action, Error>,
    calls: Vec<Call>,
}

impl Run {
    fn lines(&self) -> Vec<String> {
        self.calls.iter().map(Call::line).collect()
    }

    fn applies(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| c.method == Method::PATCH && c.content_type.contains("apply-patch"))
            .map(|c| {
                assert!(
                    c.query.contains("fieldManager=filestore-operator"),
                    "{}: {}",
                    c.path,
                    c.query
                );
                assert!(c.query.contains("force=true"), "{}: {}", c.path, c.query);
                c.path.clone()
            })
            .collect()
    }

    fn events(&self) -> Vec<(String, String)> {
        self.calls
            .iter()
            .filter(|c| c.path.ends_with("/events"))
            .map(|c| {
                (
                    c.body["type"].as_str().unwrap_or_default().to_owned(),
                    c.body["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn body_of(&self, path: &str) -> Value {
        self.calls
            .iter()
            .find(|c| c.path == path && c.method == Method::PATCH)
            .map(|c| c.body.clone())
            .unwrap_or_else(|| panic!("no PATCH of {path}"))
    }
}

async fn reconcile_once(
    fs: FileStore,
    cluster: Cluster,
    depths: Option<BTreeMap<String, QueueStats>>,
) -> Run {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let fs_json = serde_json::to_value(&fs).unwrap();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, reply) = respond(&cluster, &fs_json, &call);
            recorded.lock().unwrap().push(call);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = Client::new(service, "prod");
    let reporter = Reporter {
        controller: "filestore-operator".into(),
        instance: Some("test".into()),
    };
    let ctx = Arc::new(Context::new(client, reporter, Arc::new(Depths(depths))));
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        reconcile::reconcile(Arc::new(fs), ctx),
    )
    .await
    .expect("the reconcile finishes");
    server.abort();
    let calls: Vec<Call> = calls.lock().unwrap().clone();
    support::rbac::assert_chart_allows(
        calls
            .iter()
            .map(|c| (c.method.as_str(), c.path.as_str(), c.query.as_str())),
    );
    Run { result, calls }
}

/// The status condition of `type_`.
fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn with_finalizer(mut fs: FileStore) -> FileStore {
    fs.metadata.finalizers = Some(vec![FINALIZER.into()]);
    fs.metadata.resource_version = Some("7".into());
    fs
}

fn ready_workload(replicas: i32) -> impl Fn(Value) -> Value {
    move |mut o: Value| {
        o["status"] =
            json!({"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
        o
    }
}

fn pod(name: &str, role: Option<&str>, ready: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/name": "filestore", "app.kubernetes.io/instance": "files", "app.kubernetes.io/component": "database"});
    if let Some(r) = role {
        labels["filestore.dev/role"] = r.into();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod", "labels": labels},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// The cluster after a first reconcile: every object exists and is ready, with credentials.
fn running_cluster(fixture: &Fixture) -> Cluster {
    let mut cluster = Cluster::default();
    let path = |kind: &str, name: &str| match kind {
        "Deployment" => format!("{APPS}/deployments/{name}"),
        "StatefulSet" => format!("{APPS}/statefulsets/{name}"),
        "Secret" => format!("{NS}/secrets/{name}"),
        "ConfigMap" => format!("{NS}/configmaps/{name}"),
        _ => String::new(),
    };
    for object in fixture.build() {
        let manifest = object.to_manifest().unwrap();
        let ready = match object.kind() {
            "Deployment" | "StatefulSet" => {
                ready_workload(manifest["spec"]["replicas"].as_i64().unwrap_or(0) as i32)(manifest)
            }
            "Secret" | "ConfigMap" => manifest,
            _ => continue,
        };
        cluster
            .objects
            .insert(path(object.kind(), &object.name()), ready);
    }
    cluster
}

#[tokio::test]
async fn a_first_reconcile_reads_then_applies_every_object_then_writes_status_and_events() {
    let fixture = Fixture::new();
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), Cluster::default(), None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let reads: Vec<String> = run
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("GET"))
        .collect();
    assert_eq!(
        reads,
        [
            format!("GET {NS}/secrets/files-generated"),
            format!("GET {APPS}/deployments/files-api"),
            format!("GET {APPS}/deployments/files-worker-all"),
            format!("GET {APPS}/statefulsets/files-db"),
            format!("GET {NS}/configmaps/files-db-scripts"),
            format!("GET {NS}/pods"),
            format!("GET {APPS}/statefulsets/files-rabbitmq"),
        ]
    );
    let creates: Vec<String> = run
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("POST") && !l.ends_with("/events"))
        .collect();
    assert_eq!(
        creates,
        [format!("POST {NS}/secrets")],
        "the credentials are created, never applied over"
    );
    assert_eq!(
        run.applies(),
        [
            format!("{NS}/configmaps/files-config"),
            format!("{NS}/configmaps/files-db-scripts"),
            format!("{NS}/services/files-db"),
            format!("{NS}/services/files-db-rw"),
            format!("{NS}/services/files-db-ro"),
            "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/files-db".to_owned(),
            format!("{APPS}/statefulsets/files-db"),
            format!("{NS}/configmaps/files-rabbitmq-config"),
            format!("{NS}/secrets/files-rabbitmq-user"),
            format!("{NS}/services/files-rabbitmq-nodes"),
            format!("{NS}/services/files-rabbitmq"),
            "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/files-rabbitmq".to_owned(),
            format!("{APPS}/statefulsets/files-rabbitmq"),
            format!("{APPS}/deployments/files-api"),
            format!("{NS}/services/files-api"),
            "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/files-api".to_owned(),
            format!("{APPS}/deployments/files-worker-all"),
            format!("{FILESTORES}/status"),
        ]
    );
    let status = &run.body_of(&format!("{FILESTORES}/status"))["status"];
    assert_eq!(status["observedGeneration"], 1);
    let conditions: BTreeMap<String, (String, String)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                (
                    c["status"].as_str().unwrap().to_owned(),
                    c["reason"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let expect = |s: &str, r: &str| (s.to_owned(), r.to_owned());
    assert_eq!(
        conditions,
        [
            ("Ready".to_owned(), expect("False", "ComponentsNotReady")),
            ("DatabaseReady".to_owned(), expect("False", "NotCreated")),
            ("QueueReady".to_owned(), expect("False", "NotCreated")),
            ("ApiReady".to_owned(), expect("False", "NotCreated")),
            ("WorkersReady".to_owned(), expect("False", "PoolsNotReady")),
            ("Degraded".to_owned(), expect("False", "AsRequested")),
        ]
        .into()
    );
    assert_eq!(
        run.events(),
        [
            ("Normal".to_owned(), "CredentialsGenerated".to_owned()),
            ("Warning".to_owned(), "NotReady".to_owned())
        ]
    );
    assert_eq!(run.lines().last().unwrap(), &EVENTS.to_owned());
    assert_eq!(run.result.unwrap(), Action::requeue(reconcile::POLL));
}

#[tokio::test]
async fn a_running_filestore_keeps_its_credentials_labels_its_first_primary_and_scales_on_a_spike()
{
    let fixture = Fixture::new();
    let mut cluster = running_cluster(&fixture);
    cluster.pods = vec![
        pod("files-db-0", None, true),
        pod("files-db-1", None, true),
        pod("files-db-2", None, false),
    ];
    let spike = BTreeMap::from([
        (
            "filestore.scan".to_owned(),
            QueueStats {
                messages: 500,
                consumers: 1,
            },
        ),
        (
            "filestore.chunk".to_owned(),
            QueueStats {
                messages: 0,
                consumers: 1,
            },
        ),
        (
            "filestore.index".to_owned(),
            QueueStats {
                messages: 0,
                consumers: 1,
            },
        ),
    ]);
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), cluster, Some(spike)).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert!(
        !run.applies()
            .contains(&format!("{NS}/secrets/files-generated")),
        "stored credentials are never rewritten"
    );
    assert_eq!(
        role_patches(&run),
        [
            ("files-db-0".to_owned(), json!("primary")),
            ("files-db-1".to_owned(), json!("replica")),
            ("files-db-2".to_owned(), json!("replica"))
        ]
    );
    let workers = run.body_of(&format!("{APPS}/deployments/files-worker-all"));
    assert_eq!(
        workers["spec"]["replicas"], 10,
        "500 messages at 20 per worker want 25: capped at 10"
    );
    let reasons: Vec<String> = run.events().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        ["Scaled", "PrimaryAssigned", "Ready"],
        "status is computed as it is once the labels are set"
    );
    let status = &run.body_of(&format!("{FILESTORES}/status"))["status"];
    assert_eq!(status["workerReplicas"], 10);
    assert_eq!(status["apiReadyReplicas"], 2, "{status}");
}

#[tokio::test]
async fn a_ready_filestore_reports_ready_with_its_primary() {
    let fixture = Fixture::new();
    let mut cluster = running_cluster(&fixture);
    cluster.pods = vec![
        pod("files-db-0", Some("primary"), true),
        pod("files-db-1", Some("replica"), true),
        pod("files-db-2", Some("replica"), false),
    ];
    let idle: BTreeMap<String, QueueStats> = BTreeMap::new();
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), cluster, Some(idle)).await;
    let status = &run.body_of(&format!("{FILESTORES}/status"))["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "True", "{status}");
    assert_eq!(status["database"]["primary"], "files-db-0");
    assert_eq!(status["databaseInitialised"], true);
    let standbys: Vec<(Value, Value)> = status["database"]["standbys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["alive"].clone()))
        .collect();
    assert_eq!(
        standbys,
        [
            (json!("files-db-1"), json!(true)),
            (json!("files-db-2"), json!(false))
        ]
    );
    assert!(
        run.calls
            .iter()
            .all(|c| !c.path.starts_with(&format!("{NS}/pods/"))),
        "labelled pods are left alone"
    );
    assert_eq!(run.events(), [("Normal".to_owned(), "Ready".to_owned())]);
}

#[tokio::test]
async fn a_conflict_or_a_refusal_from_the_server_is_a_typed_error_and_a_requeue() {
    for (code, want_reason, want_requeue) in [
        (StatusCode::CONFLICT, "conflict", Duration::from_secs(2)),
        (StatusCode::FORBIDDEN, "forbidden", Duration::from_secs(60)),
    ] {
        let fixture = Fixture::new();
        let mut cluster = Cluster::default();
        cluster.failures.insert(
            (Method::PATCH, format!("{APPS}/deployments/files-api")),
            code,
        );
        let fs = Arc::new(with_finalizer(fixture.fs.clone()));
        let run = reconcile_once((*fs).clone(), cluster, None).await;
        let lines = run.lines();
        let error = run.result.unwrap_err();
        assert_eq!(error.reason(), want_reason, "{error}");
        assert!(
            error.to_string().contains("Deployment files-api"),
            "{error}"
        );
        assert_eq!(error.requeue_after(), want_requeue);
        assert!(
            !lines.iter().any(|l| l.ends_with("/status")),
            "no status is written from a failed apply"
        );
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let ctx = Arc::new(Context::new(
            Client::new(service, "prod"),
            Reporter {
                controller: "t".into(),
                instance: None,
            },
            Arc::new(Depths(None)),
        ));
        assert_eq!(
            reconcile::error_policy(fs, &error, ctx),
            Action::requeue(want_requeue)
        );
    }
}

#[tokio::test]
async fn a_new_filestore_gets_the_finalizer_before_anything_else() {
    let fixture = Fixture::new();
    let mut fs = fixture.fs.clone();
    fs.metadata.resource_version = Some("1".into());
    let run = reconcile_once(fs, Cluster::default(), None).await;
    assert_eq!(run.lines(), [format!("PATCH {FILESTORES}")]);
    assert!(run.calls[0].content_type.contains("json-patch"));
    assert!(run.calls[0].body.to_string().contains(FINALIZER));
}

fn deleting(fixture: &Fixture) -> FileStore {
    let mut fs = with_finalizer(fixture.fs.clone());
    fs.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::chrono::Utc::now(),
    ));
    fs
}

#[tokio::test]
async fn deletion_runs_the_finalizer_and_keeps_volumes_unless_told_otherwise() {
    let kept = reconcile_once(deleting(&Fixture::new()), Cluster::default(), None).await;
    assert!(kept.result.is_ok(), "{:?}", kept.result);
    assert_eq!(
        kept.lines(),
        [EVENTS.to_owned(), format!("PATCH {FILESTORES}")]
    );
    assert!(
        kept.calls[0].body["note"]
            .as_str()
            .unwrap()
            .contains("kept the volumes")
    );
    assert!(
        kept.calls[1].body.to_string().contains("remove"),
        "the finalizer is removed"
    );

    let dropped = Fixture::new().with(|s| s.database.managed.retain_volumes = false);
    let run = reconcile_once(deleting(&dropped), Cluster::default(), None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        run.lines(),
        [
            format!("DELETE {NS}/persistentvolumeclaims"),
            EVENTS.to_owned(),
            format!("PATCH {FILESTORES}"),
        ]
    );
    assert!(
        run.calls[0]
            .query
            .contains("app.kubernetes.io%2Fcomponent%3Ddatabase"),
        "{}",
        run.calls[0].query
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_in_status_and_an_event_and_nothing_is_applied() {
    let fixture =
        Fixture::new().with(|s| s.workers[0].stages = vec![filestore_operator::crd::Stage::Scan]);
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), Cluster::default(), None).await;
    assert_eq!(run.result.as_ref().unwrap(), &Action::await_change());
    assert_eq!(
        run.lines(),
        [EVENTS.to_owned(), format!("PATCH {FILESTORES}/status")]
    );
    assert_eq!(
        run.events(),
        [("Warning".to_owned(), "InvalidSpec".to_owned())]
    );
    let status = &run.calls[1].body["status"];
    let ready = condition(status, "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("no worker pool runs the chunk stage")
    );
}

fn remembering_primary(mut fs: FileStore, primary: &str) -> FileStore {
    fs.status = Some(filestore_operator::crd::FileStoreStatus {
        database: Some(filestore_operator::failover::ReplicationStatus {
            primary: Some(primary.into()),
            standbys: vec![],
        }),
        database_initialised: true,
        ..Default::default()
    });
    fs
}

fn role_patches(run: &Run) -> Vec<(String, Value)> {
    run.calls
        .iter()
        .filter(|c| c.path.starts_with(&format!("{NS}/pods/")))
        .map(|c| {
            (
                c.path.rsplit('/').next().unwrap().to_owned(),
                c.body["metadata"]["labels"]["filestore.dev/role"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_recreated_primary_pod_gets_its_role_back_not_a_replica_label() {
    let mut fixture = Fixture::new();
    fixture.database_initialised = true;
    let mut cluster = running_cluster(&fixture);
    // files-db-1 is primary (after a failover) and its pod was just recreated, unlabelled.
    cluster.pods = vec![
        pod("files-db-0", Some("replica"), true),
        pod("files-db-1", None, false),
        pod("files-db-2", Some("replica"), true),
    ];
    let fs = remembering_primary(with_finalizer(fixture.fs.clone()), "files-db-1");
    let run = reconcile_once(fs, cluster, Some(BTreeMap::new())).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        role_patches(&run),
        [("files-db-1".to_owned(), json!("primary"))]
    );
    let status = &run.body_of(&format!("{FILESTORES}/status"))["status"];
    assert_eq!(status["database"]["primary"], "files-db-1");
    let db = condition(status, "DatabaseReady");
    assert_eq!(db["reason"], "PrimaryNotReady");
}

#[tokio::test]
async fn an_initialised_database_never_gets_a_new_first_primary() {
    // The status was lost, but the scripts ConfigMap says the cluster was bootstrapped.
    let mut fixture = Fixture::new();
    fixture.database_initialised = true;
    let mut cluster = running_cluster(&fixture);
    cluster.pods = vec![
        pod("files-db-0", None, false),
        pod("files-db-1", None, false),
    ];
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), cluster, None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        role_patches(&run),
        [
            ("files-db-0".to_owned(), json!("replica")),
            ("files-db-1".to_owned(), json!("replica"))
        ]
    );
    let status = &run.body_of(&format!("{FILESTORES}/status"))["status"];
    assert_eq!(status["databaseInitialised"], true);
}

#[tokio::test]
async fn a_storage_change_keeps_the_live_volume_claims_and_says_why() {
    let fixture = Fixture::new();
    let cluster = running_cluster(&fixture);
    let bigger = fixture
        .clone()
        .with(|s| s.database.managed.storage = "50Gi".into());
    let run = reconcile_once(with_finalizer(bigger.fs.clone()), cluster, None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let set = run.body_of(&format!("{APPS}/statefulsets/files-db"));
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    assert!(
        run.events()
            .contains(&("Warning".to_owned(), "StorageChangeNotApplied".to_owned()))
    );
}

#[tokio::test]
async fn credentials_a_changed_spec_needs_are_added_on_the_stored_version_only() {
    let fixture = Fixture::new();
    let mut cluster = running_cluster(&fixture);
    let path = format!("{NS}/secrets/files-generated");
    let secret = cluster.objects.get_mut(&path).unwrap();
    secret["metadata"]["resourceVersion"] = "41".into();
    let data = secret["data"].as_object_mut().unwrap();
    let kept = data.clone();
    data.remove("erlangCookie");
    let run = reconcile_once(with_finalizer(fixture.fs.clone()), cluster, None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    let written = run.body_of(&path);
    assert_eq!(
        written["metadata"]["resourceVersion"], "41",
        "a precondition on the stored version"
    );
    for (key, value) in kept.iter().filter(|(k, _)| *k != "erlangCookie") {
        assert_eq!(&written["data"][key], value, "{key} is kept as stored");
    }
    assert!(written["data"]["erlangCookie"].is_string());
}

#[tokio::test]
async fn the_primary_is_remembered_while_its_pod_is_gone_and_its_successor_gets_the_label_back() {
    let mut fixture = Fixture::new();
    fixture.database_initialised = true;
    let mut cluster = running_cluster(&fixture);
    // files-db-0 was primary; its pod was just deleted (evicted, its node lost) and the
    // StatefulSet has not re-created it yet. No failover chose another primary.
    cluster.pods = vec![
        pod("files-db-1", Some("replica"), true),
        pod("files-db-2", Some("replica"), true),
    ];
    let fs = remembering_primary(with_finalizer(fixture.fs.clone()), "files-db-0");
    let gone = reconcile_once(fs.clone(), cluster.clone(), Some(BTreeMap::new())).await;
    assert!(gone.result.is_ok(), "{:?}", gone.result);
    assert!(role_patches(&gone).is_empty());
    let status = gone.body_of(&format!("{FILESTORES}/status"))["status"].clone();
    assert_eq!(
        status["database"]["primary"], "files-db-0",
        "a primary without a pod is still the primary: {status}"
    );
    assert_eq!(condition(&status, "DatabaseReady")["reason"], "NoPrimary");

    // The next reconcile starts from the status the last one wrote; the pod is back, unlabelled.
    let mut fs = fs;
    fs.status = Some(serde_json::from_value(status).unwrap());
    cluster.pods.insert(0, pod("files-db-0", None, false));
    let back = reconcile_once(fs, cluster, Some(BTreeMap::new())).await;
    assert!(back.result.is_ok(), "{:?}", back.result);
    assert_eq!(
        role_patches(&back),
        [("files-db-0".to_owned(), json!("primary"))],
        "the new incarnation is the primary again, not a replica waiting for one"
    );
    let status = &back.body_of(&format!("{FILESTORES}/status"))["status"];
    assert_eq!(status["database"]["primary"], "files-db-0");
}

#[tokio::test]
async fn a_spec_one_eviction_would_stop_gets_a_budget_of_none_and_one_warning_per_change() {
    let fragile = Fixture::new().with(|s| {
        s.database.managed.instances = 2;
        s.database.managed.synchronous_standbys = 1;
        s.queue.replicas = 2;
    });
    let run = reconcile_once(with_finalizer(fragile.fs.clone()), Cluster::default(), None).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
    for budget in ["files-db", "files-rabbitmq"] {
        let pdb = run.body_of(&format!(
            "/apis/policy/v1/namespaces/prod/poddisruptionbudgets/{budget}"
        ));
        assert_eq!(pdb["spec"]["maxUnavailable"], 0, "{budget}");
    }
    let unsafe_notes: Vec<String> = run
        .calls
        .iter()
        .filter(|c| c.path.ends_with("/events") && c.body["reason"] == "DisruptionUnsafe")
        .map(|c| {
            assert_eq!(c.body["type"], "Warning");
            c.body["note"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(unsafe_notes.len(), 1, "one warning: {unsafe_notes:?}");
    assert!(unsafe_notes[0].contains("one evicted instance stops every commit"));
    assert!(unsafe_notes[0].contains("lose their quorum on one eviction"));

    // Once the operator has seen this generation, it does not say it again on every poll.
    let mut seen = with_finalizer(fragile.fs.clone());
    seen.status = Some(filestore_operator::crd::FileStoreStatus {
        observed_generation: seen.metadata.generation,
        ..Default::default()
    });
    let again = reconcile_once(seen, Cluster::default(), None).await;
    assert!(
        !again
            .events()
            .iter()
            .any(|(_, reason)| reason == "DisruptionUnsafe"),
        "{:?}",
        again.events()
    );
}
