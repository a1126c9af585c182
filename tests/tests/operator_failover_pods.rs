//! The operator's pod-level instance operations (`PodInstances`) driving a real replicated
//! PostgreSQL through a Kubernetes API served over HTTP by an in-test fake (pods only; every
//! request recorded). A failover is SQL on the promoted instance plus role labels: the new
//! primary labelled primary (the read-write Service follows it), the old one fenced and
//! restarted; an old primary that comes back unfenced is fenced again and given the replica
//! label, on which its start script rewinds it (tested on its own in operator_postgres_start).
//! Every request is one the chart's RBAC allows.
#[path = "../../operator/tests/support/rbac.rs"]
mod rbac;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use filestore_operator::failover::{
    InstanceOps, PodInstances, Policy, Role, Step, Supervisor, replication_status,
};
use filestore_tests::pgcluster::PgCluster;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

const SELECTOR: &str = "app.kubernetes.io/instance=files,app.kubernetes.io/component=database";

/// The pods as the fake API server holds them, every write it was asked for, and every request
/// (method, path, query).
#[derive(Default)]
struct Pods {
    by_name: BTreeMap<String, Value>,
    writes: Vec<String>,
    requests: Vec<(String, String, String)>,
    incarnations: u32,
}

impl Pods {
    fn record(&mut self, method: &Method, uri: &axum::http::Uri) {
        self.requests.push((
            method.to_string(),
            uri.path().to_owned(),
            uri.query().unwrap_or_default().to_owned(),
        ));
    }

    /// A pod as the StatefulSet makes it: a new UID each time.
    fn create(&mut self, name: &str, role: Option<&str>) {
        self.incarnations += 1;
        let mut p = pod(name, role.unwrap_or_default());
        p["metadata"]["uid"] = format!("uid-{}", self.incarnations).into();
        if let (None, Some(labels)) = (role, p["metadata"]["labels"].as_object_mut()) {
            labels.remove("filestore.dev/role");
        }
        self.by_name.insert(name.into(), p);
    }
}

type Shared = Arc<Mutex<Pods>>;

fn pod(name: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": {
            "app.kubernetes.io/instance": "files",
            "app.kubernetes.io/component": "database",
            "filestore.dev/role": role}},
        "status": {"podIP": "127.0.0.1"}
    })
}

fn not_found(name: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": "NotFound", "code": 404, "message": format!("pods {name} not found")});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn list(State(pods): State<Shared>, method: Method, uri: axum::http::Uri) -> Response {
    let mut pods = pods.lock().unwrap();
    pods.record(&method, &uri);
    let items: Vec<Value> = pods.by_name.values().cloned().collect();
    axum::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
        .into_response()
}

async fn one(
    State(pods): State<Shared>,
    method: Method,
    uri: axum::http::Uri,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut pods = pods.lock().unwrap();
    pods.record(&method, &uri);
    if method == Method::PATCH {
        let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let role = patch["metadata"]["labels"]["filestore.dev/role"]
            .as_str()
            .unwrap_or("?");
        pods.writes.push(format!("label {name} {role}"));
        let Some(p) = pods.by_name.get_mut(&name) else {
            return not_found(&name);
        };
        p["metadata"]["labels"]["filestore.dev/role"] = role.into();
    } else if method == Method::DELETE {
        pods.writes.push(format!("delete {name}"));
        let Some(old) = pods.by_name.get(&name).cloned() else {
            return not_found(&name);
        };
        // The StatefulSet recreates it at once: a new incarnation, without the role label.
        pods.create(&name, None);
        return axum::Json(old).into_response();
    }
    match pods.by_name.get(&name) {
        Some(p) => axum::Json(p.clone()).into_response(),
        None => not_found(&name),
    }
}

struct FakeKube {
    pods: Shared,
    client: kube::Client,
}

impl FakeKube {
    async fn start(roles: &[(&str, &str)]) -> FakeKube {
        let pods: Shared = Arc::default();
        for (name, role) in roles {
            pods.lock().unwrap().create(name, Some(role));
        }
        let app = Router::new()
            .route("/api/v1/namespaces/prod/pods", get(list))
            .route(
                "/api/v1/namespaces/prod/pods/{name}",
                get(one).patch(one).delete(one),
            )
            .with_state(pods.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(url.parse().unwrap());
        filestore_operator::install_tls_provider();
        let client = kube::Client::try_from(config).unwrap();
        FakeKube { pods, client }
    }

    fn role(&self, name: &str) -> Option<String> {
        self.pods.lock().unwrap().by_name[name]["metadata"]["labels"]["filestore.dev/role"]
            .as_str()
            .map(str::to_owned)
    }

    /// Fails when the chart's RBAC does not allow every request made so far.
    fn check_rbac(&self) {
        let requests = self.pods.lock().unwrap().requests.clone();
        rbac::assert_chart_allows(
            requests
                .iter()
                .map(|(m, p, q)| (m.as_str(), p.as_str(), q.as_str())),
        );
    }

    /// The writes since the last call.
    fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.pods.lock().unwrap().writes)
    }
}

/// `PodInstances` over the fake API, reaching pod `files-db-i` at member `pgi` of `pg`.
fn pod_instances(kube: &FakeKube, pg: &PgCluster) -> PodInstances {
    let ports: Vec<u16> = pg.members.iter().map(|m| m.port).collect();
    let names = (0..ports.len()).map(|i| format!("files-db-{i}")).collect();
    PodInstances::new(
        kube.client.clone(),
        "prod",
        names,
        SELECTOR.into(),
        "unused".into(),
    )
    .with_address(Box::new(move |p: &Pod| {
        let ordinal: usize = p.name_any().rsplit('-').next()?.parse().ok()?;
        Some(("127.0.0.1".into(), *ports.get(ordinal)?))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_on_pods_promotes_by_sql_and_moves_the_role_labels() {
    let pg = PgCluster::start(3).await;
    let kube = FakeKube::start(&[
        ("files-db-0", "primary"),
        ("files-db-1", "replica"),
        ("files-db-2", "replica"),
    ])
    .await;
    let ops = pod_instances(&kube, &pg);
    let mut sup = Supervisor::new(Policy {
        failover_delay: Duration::from_secs(2),
        synchronous_standbys: 1,
    });
    let healthy = pg
        .tick_until(&mut sup, &ops, Duration::from_secs(60), |s| {
            matches!(s, Step::Healthy { .. })
        })
        .await;
    assert_eq!(
        healthy,
        Step::Healthy {
            primary: "files-db-0".into()
        }
    );
    let status = replication_status(sup.last_seen());
    assert_eq!(status.primary.as_deref(), Some("files-db-0"));
    assert!(
        status
            .standbys
            .iter()
            .all(|s| s.alive && s.replay_lag_bytes.is_some()),
        "the status reports each standby's lag: {status:?}"
    );
    kube.take_writes();

    pg.kill("pg0");
    let step = pg
        .tick_until(&mut sup, &ops, Duration::from_secs(60), |s| {
            matches!(s, Step::FailedOver { .. })
        })
        .await;
    let Step::FailedOver { promoted, fenced } = step else {
        unreachable!()
    };
    assert_eq!(fenced, vec!["files-db-0".to_owned()]);
    assert_ne!(promoted, "files-db-0");
    assert_eq!(
        kube.take_writes(),
        vec![
            "label files-db-0 fenced".to_owned(),
            "delete files-db-0".to_owned(),
            format!("label {promoted} primary"),
        ],
        "fence (out of the Services, restarted), then promote, then point -db-rw at it"
    );
    assert_eq!(kube.role(&promoted).as_deref(), Some("primary"));
    let seen = ops.observe().await;
    let new_primary = seen.iter().find(|i| i.name == promoted).unwrap();
    assert!(
        new_primary.alive && new_primary.role == Role::Primary,
        "{seen:?}"
    );
    assert!(
        new_primary.timeline >= 2,
        "promoted onto a new timeline: {seen:?}"
    );

    // The old primary's server comes back on its own, serving, and labelled by mistake.
    kube.pods
        .lock()
        .unwrap()
        .create("files-db-0", Some("replica"));
    pg.start_member("pg0");
    let step = pg
        .tick_until(&mut sup, &ops, Duration::from_secs(60), |s| {
            matches!(s, Step::Rejoined { .. })
        })
        .await;
    assert_eq!(
        step,
        Step::Rejoined {
            instance: "files-db-0".into(),
            primary: promoted.clone()
        }
    );
    assert_eq!(
        kube.take_writes(),
        vec![
            "label files-db-0 fenced".to_owned(),
            "delete files-db-0".to_owned(),
            "label files-db-0 replica".to_owned(),
        ],
        "a second primary is fenced and restarted, then told to follow"
    );
    assert_eq!(kube.role("files-db-0").as_deref(), Some("replica"));
    kube.check_rbac();
}
