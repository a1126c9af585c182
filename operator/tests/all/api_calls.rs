//! The operator's API calls outside the reconcile's own, against a mocked API server: fencing a
//! former primary's pod (retried until the pod is a new incarnation, by UID), the leader Lease
//! and the controller's lists and watches. Every request must be one the chart's RBAC allows.
use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filestore_operator::failover::{InstanceOps, PodInstances};
use filestore_operator::leader::Election;
use filestore_operator::queue_depth::{DepthError, QueueProbe, QueueStats};
use filestore_operator::reconcile::{self, Context};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use support::rbac::{Install, OPERATOR_NAMESPACE, WATCHED, assert_allowed_by, assert_chart_allows};

#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    query: String,
    body: Value,
}

type Handler = Box<dyn FnMut(&Call) -> (StatusCode, Value) + Send>;

/// A client whose every request goes to `handler`, and the requests it made.
fn mocked(mut handler: Handler) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, reply) = handler(&call);
            recorded.lock().unwrap().push(call);
            // Null is an empty body: a watch that ends at once.
            let body = if reply.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(&reply).unwrap()
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(body))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "prod"), calls)
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
               "code": code.as_u16(), "message": format!("{reason} (mocked)")}),
    )
}

fn lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path.rsplit('/').next().unwrap_or("")))
        .collect()
}

fn check_rbac(calls: &[Call]) {
    assert_chart_allows(
        calls
            .iter()
            .map(|c| (c.method.as_str(), c.path.as_str(), c.query.as_str())),
    );
}

/// The pods of a StatefulSet as the API server holds them: deleting one removes it at once
/// (grace 0) and the StatefulSet recreates it as a new incarnation, with a new UID and without
/// the role label the operator gave the old one.
#[derive(Default)]
struct StatefulPods {
    pods: BTreeMap<String, (u32, Option<String>)>,
    refuse_deletes: bool,
}

impl StatefulPods {
    fn with(name: &str, incarnation: u32, role: Option<&str>) -> Arc<Mutex<Self>> {
        let mut pods = StatefulPods::default();
        pods.pods
            .insert(name.into(), (incarnation, role.map(str::to_owned)));
        Arc::new(Mutex::new(pods))
    }

    fn manifest(name: &str, incarnation: u32, role: &Option<String>) -> Value {
        let mut labels = json!({"app.kubernetes.io/component": "database"});
        if let Some(role) = role {
            labels["filestore.dev/role"] = role.clone().into();
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "prod",
               "uid": format!("uid-{incarnation}"), "labels": labels}})
    }

    fn handler(state: Arc<Mutex<Self>>) -> Handler {
        Box::new(move |call| {
            let mut state = state.lock().unwrap();
            let name = call.path.rsplit('/').next().unwrap_or_default().to_owned();
            let Some((incarnation, role)) = state.pods.get(&name).cloned() else {
                return status(StatusCode::NOT_FOUND, "NotFound");
            };
            match call.method {
                Method::GET => (StatusCode::OK, Self::manifest(&name, incarnation, &role)),
                Method::PATCH => {
                    let role = call.body["metadata"]["labels"]["filestore.dev/role"]
                        .as_str()
                        .map(str::to_owned);
                    state.pods.insert(name.clone(), (incarnation, role.clone()));
                    (StatusCode::OK, Self::manifest(&name, incarnation, &role))
                }
                Method::DELETE if state.refuse_deletes => {
                    status(StatusCode::FORBIDDEN, "Forbidden")
                }
                Method::DELETE => {
                    let precondition = call.body["preconditions"]["uid"].as_str();
                    if precondition.is_some_and(|uid| uid != format!("uid-{incarnation}")) {
                        return status(StatusCode::CONFLICT, "Conflict");
                    }
                    state.pods.insert(name.clone(), (incarnation + 1, None));
                    (StatusCode::OK, Self::manifest(&name, incarnation, &role))
                }
                _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            }
        })
    }
}

fn instances(client: Client) -> PodInstances {
    PodInstances::new(
        client,
        "prod",
        vec!["files-db-0".into(), "files-db-1".into()],
        "app.kubernetes.io/component=database".into(),
        "unused".into(),
    )
}

#[tokio::test]
async fn a_pod_already_labelled_fenced_is_still_restarted_until_it_is_a_new_incarnation() {
    let pods = StatefulPods::with("files-db-0", 1, Some("fenced"));
    let (client, calls) = mocked(StatefulPods::handler(pods.clone()));
    let ops = instances(client);
    ops.fence("files-db-0").await.expect("fenced");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        lines(&calls),
        ["GET files-db-0", "DELETE files-db-0", "GET files-db-0"],
        "a label is not a fence: the old server is stopped, then seen gone"
    );
    let delete = &calls[1].body;
    assert_eq!(delete["gracePeriodSeconds"], 0);
    assert_eq!(
        delete["preconditions"]["uid"], "uid-1",
        "only the incarnation being fenced is deleted"
    );
    assert_eq!(pods.lock().unwrap().pods["files-db-0"].0, 2);
    assert!(ops.pending_fences().is_empty());
    check_rbac(&calls);
}

#[tokio::test]
async fn a_refused_delete_fails_the_fence_and_the_next_tick_deletes_that_incarnation() {
    let pods = StatefulPods::with("files-db-0", 1, Some("primary"));
    pods.lock().unwrap().refuse_deletes = true;
    let (client, calls) = mocked(StatefulPods::handler(pods.clone()));
    let first = instances(client.clone());
    let refused = first.fence("files-db-0").await;
    assert!(
        refused.is_err(),
        "a fence whose delete is refused is not done"
    );
    assert_eq!(
        pods.lock().unwrap().pods["files-db-0"],
        (1, Some("fenced".to_owned())),
        "out of the Services already, still the same incarnation"
    );
    let pending = first.pending_fences();
    assert_eq!(
        pending,
        BTreeMap::from([("files-db-0".into(), "uid-1".into())])
    );

    pods.lock().unwrap().refuse_deletes = false;
    let next_tick = instances(client).fencing(pending);
    next_tick.fence("files-db-0").await.expect("fenced");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        lines(&calls),
        [
            "GET files-db-0",
            "PATCH files-db-0",
            "DELETE files-db-0",
            "GET files-db-0",
            "DELETE files-db-0",
            "GET files-db-0",
        ]
    );
    assert_eq!(pods.lock().unwrap().pods["files-db-0"], (2, None));
    assert!(next_tick.pending_fences().is_empty());
    check_rbac(&calls);
}

#[tokio::test]
async fn a_retry_that_finds_a_new_incarnation_leaves_it_running() {
    // The last tick deleted uid-1 and failed before it saw the successor.
    let pods = StatefulPods::with("files-db-0", 2, None);
    let (client, calls) = mocked(StatefulPods::handler(pods.clone()));
    let ops = instances(client).fencing(BTreeMap::from([("files-db-0".into(), "uid-1".into())]));
    ops.fence("files-db-0").await.expect("fenced");
    assert_eq!(lines(&calls.lock().unwrap()), ["GET files-db-0"]);
    assert_eq!(pods.lock().unwrap().pods["files-db-0"], (2, None));
    assert!(ops.pending_fences().is_empty());
}

/// A Lease store: `held` is the Lease as stored, if any.
fn leases(held: Option<Value>) -> Handler {
    let held = Arc::new(Mutex::new(held));
    Box::new(move |call| {
        let mut held = held.lock().unwrap();
        match call.method {
            Method::GET => match held.as_ref() {
                Some(lease) => (StatusCode::OK, lease.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST | Method::PUT => {
                let mut lease = call.body.clone();
                lease["metadata"]["resourceVersion"] = "2".into();
                *held = Some(lease.clone());
                (StatusCode::OK, lease)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    })
}

async fn lead_once(held: Option<Value>) -> Vec<Call> {
    let (client, calls) = mocked(leases(held));
    let election = Election::new(
        client,
        OPERATOR_NAMESPACE,
        "filestore-operator",
        "operator-0",
        Duration::from_secs(15),
    );
    let (tx, mut leading) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(election.run(tx));
    let led = tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l)).await;
    running.abort();
    assert!(matches!(led, Ok(Ok(_))), "the only replica leads");
    calls.lock().unwrap().clone()
}

#[tokio::test]
async fn the_leader_lease_is_created_then_renewed_in_the_operators_namespace() {
    let created = lead_once(None).await;
    assert_eq!(lines(&created), ["GET filestore-operator", "POST leases"]);
    check_rbac(&created);
    let mut lease = created[1].body.clone();
    lease["metadata"]["namespace"] = OPERATOR_NAMESPACE.into();
    lease["metadata"]["resourceVersion"] = "1".into();
    let renewed = lead_once(Some(lease)).await;
    assert_eq!(
        lines(&renewed),
        ["GET filestore-operator", "PUT filestore-operator"]
    );
    check_rbac(&renewed);
}

struct NoBroker;

#[async_trait::async_trait]
impl QueueProbe for NoBroker {
    async fn depths(
        &self,
        _url: &str,
        _queues: &[&str],
    ) -> Result<BTreeMap<String, QueueStats>, DepthError> {
        Err(DepthError("no broker in this test".into()))
    }
}

const WATCHED_RESOURCES: [&str; 5] = [
    "filestores",
    "deployments",
    "statefulsets",
    "services",
    "configmaps",
];

/// The controller's requests until it has listed and watched everything it watches, in
/// `namespace` (every namespace when empty), on a cluster with nothing in it.
async fn controller_requests(namespace: &str) -> Vec<Call> {
    let (client, calls) = mocked(Box::new(|call| {
        if call.query.contains("watch=true") {
            (StatusCode::OK, Value::Null)
        } else {
            (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}),
            )
        }
    }));
    let reporter = Reporter {
        controller: "filestore-operator".into(),
        instance: None,
    };
    let ctx = Arc::new(Context::new(client.clone(), reporter, Arc::new(NoBroker)));
    let running = tokio::spawn(
        reconcile::controller(&client, namespace)
            .run(reconcile::reconcile, reconcile::error_policy, ctx)
            .for_each(|_| async {}),
    );
    let seen_all = |calls: &[Call]| {
        WATCHED_RESOURCES.iter().all(|resource| {
            let of = |watch: bool| {
                calls.iter().any(|c| {
                    c.path.ends_with(&format!("/{resource}"))
                        && c.query.contains("watch=true") == watch
                })
            };
            of(false) && of(true)
        })
    };
    for _ in 0..200 {
        if seen_all(&calls.lock().unwrap()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    let calls = calls.lock().unwrap().clone();
    assert!(seen_all(&calls), "{:?}", lines(&calls));
    calls
}

fn requests(calls: &[Call]) -> impl Iterator<Item = (&str, &str, &str)> {
    calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.query.as_str()))
}

#[tokio::test]
async fn the_controller_lists_and_watches_what_the_chart_lets_it_either_way_it_is_installed() {
    let everywhere = controller_requests("").await;
    assert!(
        everywhere.iter().all(|c| !c.path.contains("/namespaces/")),
        "every namespace: {:?}",
        lines(&everywhere)
    );
    assert_allowed_by(&[Install::Default], requests(&everywhere));

    let one = controller_requests(WATCHED).await;
    assert!(
        one.iter()
            .all(|c| c.path.contains(&format!("/namespaces/{WATCHED}/"))),
        "{:?}",
        lines(&one)
    );
    assert_allowed_by(&[Install::Default, Install::Watching], requests(&one));
}
