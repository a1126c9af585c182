//! What a FileStore owns, object by object: exactly the intended objects, hardened pods, and a
//! spec change that touches only what it should.
use crate::support;

use filestore_operator::build::secrets::{self, Credentials};
use filestore_operator::build::{BuildError, disruption_warnings, validate};
use filestore_operator::crd::{
    ExternalService, IngressSpec, Provisioning, SecretKeyRef, Stage, WorkerPool,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use support::{Fixture, NAME, changed_objects, containers, env};

fn pool(name: &str, stages: &[Stage], min: i32, max: i32) -> WorkerPool {
    WorkerPool {
        name: name.into(),
        min_replicas: min,
        max_replicas: max,
        stages: stages.to_vec(),
        ..WorkerPool::default()
    }
}

fn external(name: &str) -> Option<ExternalService> {
    Some(ExternalService {
        url_secret: SecretKeyRef {
            name: name.into(),
            key: "url".into(),
        },
    })
}

#[test]
fn a_default_filestore_owns_exactly_these_objects() {
    let built: Vec<String> = Fixture::new()
        .build()
        .iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect();
    assert_eq!(
        built,
        [
            "Secret/files-generated",
            "ConfigMap/files-config",
            "ConfigMap/files-db-scripts",
            "Service/files-db",
            "Service/files-db-rw",
            "Service/files-db-ro",
            "PodDisruptionBudget/files-db",
            "StatefulSet/files-db",
            "ConfigMap/files-rabbitmq-config",
            "Secret/files-rabbitmq-user",
            "Service/files-rabbitmq-nodes",
            "Service/files-rabbitmq",
            "PodDisruptionBudget/files-rabbitmq",
            "StatefulSet/files-rabbitmq",
            "Deployment/files-api",
            "Service/files-api",
            "PodDisruptionBudget/files-api",
            "Deployment/files-worker-all",
        ]
    );
}

#[test]
fn every_object_is_owned_by_the_filestore_except_the_credentials_that_outlive_it() {
    for (key, manifest) in Fixture::new().manifests() {
        let meta = &manifest["metadata"];
        assert_eq!(meta["namespace"], "prod", "{key}");
        assert_eq!(meta["labels"]["app.kubernetes.io/instance"], NAME, "{key}");
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"], "filestore-operator",
            "{key}"
        );
        if key == "Secret/files-generated" {
            assert!(
                meta["ownerReferences"].is_null(),
                "{key} must survive deletion"
            );
            continue;
        }
        let owner = &meta["ownerReferences"][0];
        assert_eq!(owner["kind"], "FileStore", "{key}");
        assert_eq!(owner["name"], NAME, "{key}");
        assert_eq!(owner["controller"], true, "{key}");
    }
}

#[test]
fn every_container_is_non_root_read_only_without_capabilities_and_probed() {
    let fixture = Fixture::new().with(|s| {
        s.workers = vec![
            pool("scan", &[Stage::Scan], 1, 2),
            pool("rest", &[Stage::Chunk, Stage::Index], 0, 5),
        ]
    });
    let workloads: Vec<_> = fixture
        .manifests()
        .into_iter()
        .filter(|(k, _)| k.starts_with("Deployment/") || k.starts_with("StatefulSet/"))
        .collect();
    assert_eq!(workloads.len(), 5);
    for (key, workload) in workloads {
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{key}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{key}"
        );
        for c in containers(&workload) {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{key} {}", c["name"]);
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{key} {}", c["name"]);
            assert_eq!(
                sc["capabilities"]["drop"],
                json!(["ALL"]),
                "{key} {}",
                c["name"]
            );
        }
        let main = &pod["containers"][0];
        assert!(
            main["readinessProbe"].is_object(),
            "{key} has no readiness probe"
        );
        assert!(
            main["livenessProbe"].is_object(),
            "{key} has no liveness probe"
        );
    }
}

#[test]
fn resources_given_in_the_spec_reach_their_containers() {
    let limits =
        json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}});
    let fixture = Fixture::new().with(|s| {
        s.api.resources = Some(serde_json::from_value(limits.clone()).unwrap());
        s.workers[0].resources = Some(serde_json::from_value(limits.clone()).unwrap());
    });
    for key in ["Deployment/files-api", "Deployment/files-worker-all"] {
        assert_eq!(
            fixture.manifest(key)["spec"]["template"]["spec"]["containers"][0]["resources"],
            limits,
            "{key}"
        );
    }
}

#[test]
fn changing_api_replicas_changes_only_the_api_deployment_replicas() {
    let before = Fixture::new();
    let after = before.clone().with(|s| s.api.replicas = 5);
    let changes = changed_objects(&before.manifests(), &after.manifests());
    assert_eq!(
        changes,
        [(
            "Deployment/files-api".to_owned(),
            vec![".spec.replicas".to_owned()]
        )]
        .into()
    );
}

#[test]
fn changing_a_setting_changes_the_config_map_and_rolls_only_the_filestore_pods() {
    let before = Fixture::new();
    let after = before
        .clone()
        .with(|s| s.object_storage.region = "eu-west-1".into());
    let changes = changed_objects(&before.manifests(), &after.manifests());
    let hash = ".spec.template.metadata.annotations.filestore.dev/config-hash".to_owned();
    assert_eq!(
        changes,
        [
            (
                "ConfigMap/files-config".to_owned(),
                vec![".data.FILESTORE_S3_REGION".to_owned()]
            ),
            ("Deployment/files-api".to_owned(), vec![hash.clone()]),
            ("Deployment/files-worker-all".to_owned(), vec![hash]),
        ]
        .into()
    );
}

#[test]
fn changing_the_database_size_touches_only_the_database_statefulset_and_its_config() {
    let before = Fixture::new();
    let after = before.clone().with(|s| {
        s.database.managed.instances = 5;
        s.database.managed.synchronous_standbys = 2;
    });
    let changes = changed_objects(&before.manifests(), &after.manifests());
    assert_eq!(
        changes,
        [
            (
                "ConfigMap/files-db-scripts".to_owned(),
                vec![".data.postgresql.conf".to_owned()]
            ),
            (
                "StatefulSet/files-db".to_owned(),
                vec![".spec.replicas".to_owned()]
            ),
        ]
        .into()
    );
    let conf = after.manifest("ConfigMap/files-db-scripts")["data"]["postgresql.conf"].clone();
    assert!(conf.as_str().unwrap().contains(
        r#"synchronous_standby_names = 'ANY 2 ("files-db-0", "files-db-1", "files-db-2", "files-db-3", "files-db-4")'"#
    ));
}

#[test]
fn postgres_runs_a_primary_and_streaming_standbys_behind_role_services() {
    let fixture = Fixture::new();
    let conf = fixture.manifest("ConfigMap/files-db-scripts")["data"]["postgresql.conf"].clone();
    let conf = conf.as_str().unwrap();
    assert!(conf.contains(
        r#"synchronous_standby_names = 'ANY 1 ("files-db-0", "files-db-1", "files-db-2")'"#
    ));
    assert!(conf.contains("wal_level = replica") && conf.contains("hot_standby = on"));
    let rw = fixture.manifest("Service/files-db-rw");
    assert_eq!(rw["spec"]["selector"]["filestore.dev/role"], "primary");
    let ro = fixture.manifest("Service/files-db-ro");
    assert_eq!(ro["spec"]["selector"]["filestore.dev/role"], "replica");
    let set = fixture.manifest("StatefulSet/files-db");
    assert_eq!(set["spec"]["replicas"], 3);
    assert_eq!(set["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(
        set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let script = fixture.manifest("ConfigMap/files-db-scripts")["data"]["start.sh"].clone();
    assert!(script.as_str().unwrap().contains("pg_basebackup"));
}

#[test]
fn a_single_instance_or_no_quorum_means_no_synchronous_standbys() {
    for (instances, quorum) in [(1, 0), (3, 0)] {
        let fixture = Fixture::new().with(|s| {
            s.database.managed.instances = instances;
            s.database.managed.synchronous_standbys = quorum;
        });
        let conf =
            fixture.manifest("ConfigMap/files-db-scripts")["data"]["postgresql.conf"].clone();
        assert!(
            conf.as_str()
                .unwrap()
                .contains("synchronous_standby_names = ''")
        );
    }
}

#[test]
fn an_initialised_database_is_never_bootstrapped_again() {
    let mut fixture = Fixture::new();
    let initialised =
        |f: &Fixture| f.manifest("ConfigMap/files-db-scripts")["data"]["initialised"].clone();
    assert_eq!(initialised(&fixture), "false");
    fixture.database_initialised = true;
    assert_eq!(initialised(&fixture), "true");
}

#[test]
fn deleting_volumes_is_opt_in() {
    let fixture = Fixture::new().with(|s| s.database.managed.retain_volumes = false);
    let set = fixture.manifest("StatefulSet/files-db");
    assert_eq!(
        set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
}

#[test]
fn rabbitmq_nodes_find_each_other_by_stable_names_and_default_to_quorum_queues() {
    let fixture = Fixture::new();
    let conf =
        fixture.manifest("ConfigMap/files-rabbitmq-config")["data"]["10-filestore.conf"].clone();
    let conf = conf.as_str().unwrap();
    assert!(conf.contains("cluster_formation.peer_discovery_backend = classic_config"));
    for i in 0..3 {
        assert!(conf.contains(&format!(
            "cluster_formation.classic_config.nodes.{} = rabbit@files-rabbitmq-{i}.files-rabbitmq-nodes.prod.svc.cluster.local",
            i + 1
        )));
    }
    assert!(conf.contains("default_queue_type = quorum"));
    let nodes = fixture.manifest("Service/files-rabbitmq-nodes");
    assert_eq!(nodes["spec"]["clusterIP"], "None");
    assert_eq!(nodes["spec"]["publishNotReadyAddresses"], true);
    let set = fixture.manifest("StatefulSet/files-rabbitmq");
    assert_eq!(set["spec"]["serviceName"], "files-rabbitmq-nodes");
    let password = fixture
        .credentials()
        .get(secrets::QUEUE_PASSWORD)
        .unwrap()
        .to_owned();
    let user = fixture.manifest("Secret/files-rabbitmq-user");
    let conf: Vec<u8> = serde_json::from_value(user["data"]["20-default-user.conf"].clone())
        .map(|b: k8s_openapi::ByteString| b.0)
        .unwrap();
    assert_eq!(
        String::from_utf8(conf).unwrap(),
        format!("default_user = filestore\ndefault_pass = {password}\n")
    );
}

#[test]
fn each_worker_pool_runs_its_stages_at_the_replicas_the_autoscaler_chose_within_bounds() {
    let fixture = Fixture::new()
        .with(|s| {
            s.workers = vec![
                pool("scan", &[Stage::Scan], 1, 4),
                pool("rest", &[Stage::Chunk, Stage::Index], 2, 8),
            ]
        })
        .with_workers("scan", 9)
        .with_workers("rest", 5);
    let scan = fixture.manifest("Deployment/files-worker-scan");
    let rest = fixture.manifest("Deployment/files-worker-rest");
    assert_eq!(scan["spec"]["replicas"], 4, "clamped to maxReplicas");
    assert_eq!(rest["spec"]["replicas"], 5);
    assert_eq!(
        env(&containers(&scan)[0], "FILESTORE_STAGES")["value"],
        "scan"
    );
    assert_eq!(
        env(&containers(&rest)[0], "FILESTORE_STAGES")["value"],
        "chunk,index"
    );
    assert_eq!(
        scan["spec"]["selector"]["matchLabels"]["filestore.dev/pool"],
        "scan"
    );
    assert!(
        fixture
            .manifests()
            .keys()
            .all(|k| k != "Deployment/files-worker-all")
    );
}

#[test]
fn an_ingress_exists_only_when_asked_for_and_routes_to_the_api_service() {
    assert!(
        Fixture::new()
            .manifests()
            .keys()
            .all(|k| !k.starts_with("Ingress/"))
    );
    let fixture = Fixture::new().with(|s| {
        s.api.ingress = Some(IngressSpec {
            host: "files.example.com".into(),
            class_name: Some("nginx".into()),
            tls_secret: Some("files-tls".into()),
        })
    });
    let ingress = fixture.manifest("Ingress/files-api");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "files-tls");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "files-api");
    let settings = fixture.manifest("ConfigMap/files-config");
    assert_eq!(
        settings["data"]["FILESTORE_PUBLIC_URL"],
        "https://files.example.com"
    );
}

#[test]
fn external_backends_are_not_provisioned_and_their_urls_come_from_their_secrets() {
    let fixture = Fixture::new().with(|s| {
        s.database.mode = Provisioning::External;
        s.database.external = external("pg-url");
        s.queue.mode = Provisioning::External;
        s.queue.external = external("amqp-url");
    });
    let manifests = fixture.manifests();
    assert!(
        manifests
            .keys()
            .all(|k| !k.contains("-db") && !k.contains("rabbitmq")),
        "{:?}",
        manifests.keys()
    );
    let api = containers(&manifests["Deployment/files-api"])[0].clone();
    assert_eq!(
        env(&api, "FILESTORE_DATABASE_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "pg-url", "key": "url"})
    );
    assert_eq!(
        env(&api, "FILESTORE_AMQP_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "amqp-url", "key": "url"})
    );
    let keys = fixture.credentials().0.into_keys().collect::<Vec<_>>();
    assert_eq!(
        keys,
        ["jwtSecret", "masterKey", "masterKeyId", "urlSigningKey"]
    );
}

#[test]
fn managed_backends_are_reached_through_kubelet_composed_urls_and_no_password_is_written_into_a_workload()
 {
    let fixture = Fixture::new();
    let manifests = fixture.manifests();
    let api = containers(&manifests["Deployment/files-api"])[0].clone();
    assert_eq!(
        env(&api, "FILESTORE_DATABASE_URL")["value"],
        "postgres://filestore:$(FILESTORE_DATABASE_PASSWORD)@files-db-rw:5432/filestore"
    );
    assert_eq!(
        env(&api, "FILESTORE_DATABASE_REPLICA_URL")["value"],
        "postgres://filestore:$(FILESTORE_DATABASE_PASSWORD)@files-db-ro:5432/filestore"
    );
    assert_eq!(
        env(&api, "FILESTORE_AMQP_URL")["value"],
        "amqp://filestore:$(FILESTORE_AMQP_PASSWORD)@files-rabbitmq:5672/%2f"
    );
    let secret_values: Vec<String> = fixture
        .credentials()
        .0
        .into_values()
        .map(|v| String::from_utf8(v).unwrap())
        .filter(|v| v.len() > 20)
        .collect();
    for (key, manifest) in manifests.iter().filter(|(k, _)| !k.starts_with("Secret/")) {
        let text = manifest.to_string();
        for value in &secret_values {
            assert!(
                !text.contains(value.as_str()),
                "{key} holds a generated secret"
            );
        }
    }
}

#[test]
fn auth_comes_from_the_identity_provider_a_key_secret_or_a_generated_development_secret() {
    let api = |f: Fixture| containers(&f.manifest("Deployment/files-api"))[0].clone();
    let generated = api(Fixture::new());
    assert_eq!(
        env(&generated, "FILESTORE_JWT_SECRET")["valueFrom"]["secretKeyRef"]["key"],
        "jwtSecret"
    );
    let keyed = Fixture::new().with(|s| s.auth.key_secret = Some("jwt-public".into()));
    let deployment = keyed.manifest("Deployment/files-api");
    assert_eq!(
        env(&containers(&deployment)[0], "FILESTORE_JWT_PUBLIC_KEY")["value"],
        "/etc/filestore/jwt/publicKey"
    );
    assert!(
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "jwt-public")
    );
    assert!(!keyed.credentials().0.contains_key("jwtSecret"));
    let jwks =
        Fixture::new().with(|s| s.auth.jwks_url = Some("https://id.example.com/jwks".into()));
    assert!(env(&api(jwks.clone()), "FILESTORE_JWT_SECRET").is_null());
    assert_eq!(
        jwks.manifest("ConfigMap/files-config")["data"]["FILESTORE_JWKS_URL"],
        "https://id.example.com/jwks"
    );
}

#[test]
fn the_master_key_comes_from_the_given_secret_or_a_generated_one() {
    let given = Fixture::new().with(|s| s.encryption.master_key_secret = Some("vault-key".into()));
    let worker = containers(&given.manifest("Deployment/files-worker-all"))[0].clone();
    assert_eq!(
        env(&worker, "FILESTORE_MASTER_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "vault-key", "key": "masterKey"})
    );
    assert_eq!(
        env(&worker, "FILESTORE_MASTER_KEY_ID")["valueFrom"]["secretKeyRef"],
        json!({"name": "vault-key", "key": "keyId"})
    );
    let generated = containers(&Fixture::new().manifest("Deployment/files-worker-all"))[0].clone();
    assert_eq!(
        env(&generated, "FILESTORE_MASTER_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "files-generated"
    );
}

#[test]
fn credentials_are_generated_once_only_ever_added_to_and_never_rotated() {
    let spec = Fixture::new().fs.spec;
    let mut rng = StdRng::seed_from_u64(1);
    let (first, generated) = Credentials::default().complete(&spec, &mut rng);
    assert_eq!(generated.len(), secrets::required_keys(&spec).len());
    assert_eq!(first.get(secrets::MASTER_KEY).unwrap().len(), 64);
    let (again, generated) = first.complete(&spec, &mut rng);
    assert_eq!(again, first, "a second reconcile changes nothing");
    assert!(generated.is_empty());
    // The user brings their own master key later: the generated one stays, as chunks need it.
    let mut with_key = spec.clone();
    with_key.encryption.master_key_secret = Some("vault-key".into());
    let (kept, _) = first.complete(&with_key, &mut rng);
    assert_eq!(
        kept.get(secrets::MASTER_KEY),
        first.get(secrets::MASTER_KEY)
    );
    // A spec that needs a new key gets it added, the rest unchanged.
    let mut partial = first.clone();
    partial.0.remove(secrets::ERLANG_COOKIE);
    let (completed, generated) = partial.complete(&spec, &mut rng);
    assert_eq!(generated, [secrets::ERLANG_COOKIE]);
    assert_eq!(
        completed.get(secrets::DATABASE_PASSWORD),
        first.get(secrets::DATABASE_PASSWORD)
    );
}

#[test]
fn specs_the_schema_cannot_refuse_are_refused_with_a_clear_reason() {
    let refused = |f: Fixture| match validate(&f.fs) {
        Err(BuildError::InvalidSpec(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let no_index =
        Fixture::new().with(|s| s.workers = vec![pool("a", &[Stage::Scan, Stage::Chunk], 1, 2)]);
    assert_eq!(refused(no_index), "no worker pool runs the index stage");
    let twice = Fixture::new().with(|s| {
        s.workers = vec![
            pool("a", &Stage::ALL, 1, 2),
            pool("a", &[Stage::Scan], 1, 2),
        ]
    });
    assert_eq!(refused(twice), "worker pool \"a\" is named twice");
    let external_without_secret = Fixture::new().with(|s| s.database.mode = Provisioning::External);
    assert!(refused(external_without_secret).contains("database.external"));
    let quorum_too_large = Fixture::new().with(|s| s.database.managed.synchronous_standbys = 3);
    assert!(refused(quorum_too_large).contains("must be fewer than instances"));
}

#[test]
fn rabbitmq_node_names_and_their_probes_follow_the_cluster_domain() {
    let mut fixture = Fixture::new();
    fixture.cluster_domain = Some("corp.example".into());
    let conf =
        fixture.manifest("ConfigMap/files-rabbitmq-config")["data"]["10-filestore.conf"].clone();
    let conf = conf.as_str().unwrap();
    for i in 0..3 {
        assert!(
            conf.contains(&format!(
                "cluster_formation.classic_config.nodes.{} = rabbit@files-rabbitmq-{i}.files-rabbitmq-nodes.prod.svc.corp.example\n",
                i + 1
            )),
            "{conf}"
        );
    }
    let set = fixture.manifest("StatefulSet/files-rabbitmq");
    let rabbit = &containers(&set)[0];
    assert_eq!(
        env(rabbit, "RABBITMQ_NODENAME")["value"],
        "rabbit@$(POD_NAME).files-rabbitmq-nodes.prod.svc.corp.example"
    );
    assert_eq!(env(rabbit, "RABBITMQ_USE_LONGNAME")["value"], "true");
    // The probes' CLI reaches the node RABBITMQ_NODENAME names, from the container's env.
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let command = rabbit[probe]["exec"]["command"].to_string();
        assert!(command.contains("rabbitmq-diagnostics"), "{command}");
        assert!(
            !command.contains("rabbit@"),
            "{probe} names no node of its own"
        );
    }
    let everything = serde_json::to_string(&fixture.manifests()).unwrap();
    assert!(
        !everything.contains("cluster.local"),
        "no name is left in the default domain"
    );
}

#[test]
fn postgres_gets_a_memory_backed_dev_shm_of_a_bounded_size() {
    let set = Fixture::new().manifest("StatefulSet/files-db");
    let volumes = set["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let shm = volumes
        .iter()
        .find(|v| v["name"] == "shm")
        .expect("a shm volume");
    assert_eq!(
        shm["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "256Mi"})
    );
    let postgres = &containers(&set)[0];
    let mounts = postgres["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "shm" && m["mountPath"] == "/dev/shm" && m["readOnly"].is_null()),
        "{mounts:?}"
    );
}

fn max_unavailable(fixture: &Fixture, budget: &str) -> serde_json::Value {
    fixture.manifest(&format!("PodDisruptionBudget/{budget}"))["spec"]["maxUnavailable"].clone()
}

#[test]
fn a_spec_one_eviction_would_stop_gets_a_budget_that_allows_none_and_a_warning() {
    let default = Fixture::new();
    assert_eq!(max_unavailable(&default, "files-db"), 1);
    assert_eq!(max_unavailable(&default, "files-rabbitmq"), 1);
    assert!(disruption_warnings(&validate(&default.fs).unwrap()).is_empty());

    let fragile = Fixture::new().with(|s| {
        s.database.managed.instances = 2;
        s.database.managed.synchronous_standbys = 1;
        s.queue.replicas = 2;
    });
    assert_eq!(
        max_unavailable(&fragile, "files-db"),
        0,
        "evicting either of 2 instances stops every commit"
    );
    assert_eq!(
        max_unavailable(&fragile, "files-rabbitmq"),
        0,
        "evicting either of 2 nodes loses the quorum"
    );
    let warnings = disruption_warnings(&validate(&fragile.fs).unwrap());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("database: 2 instances with 1 synchronous standby"));
    assert!(warnings[1].starts_with("queue: 2 RabbitMQ nodes"));

    // Only what has no instance or node to spare loses its budget of one; a single instance or
    // node was asked to be no more available than itself.
    for (instances, standbys, db_budget, nodes) in [(3, 2, 0, 1), (2, 0, 1, 3), (1, 0, 1, 4)] {
        let other = Fixture::new().with(|s| {
            s.database.managed.instances = instances;
            s.database.managed.synchronous_standbys = standbys;
            s.queue.replicas = nodes;
        });
        assert_eq!(
            max_unavailable(&other, "files-db"),
            db_budget,
            "{instances} instances, {standbys} synchronous"
        );
        assert_eq!(
            max_unavailable(&other, "files-rabbitmq"),
            1,
            "{nodes} nodes"
        );
    }
}

/// Prometheus scrapes a `metrics` port on every Filestore pod, API and workers alike; the
/// API's public port (the one the Ingress exposes) serves no metrics.
#[test]
fn api_and_worker_pods_serve_metrics_on_a_port_of_their_own() {
    let manifests = Fixture::new().manifests();
    let workloads: Vec<&serde_json::Value> = manifests
        .iter()
        .filter(|(key, _)| key.starts_with("Deployment/"))
        .map(|(_, v)| v)
        .collect();
    assert!(workloads.len() >= 2, "the API and at least one worker pool");
    for workload in workloads {
        let filestore = &containers(workload)[0];
        let ports = filestore["ports"].as_array().cloned().unwrap_or_default();
        let metrics = ports.iter().find(|p| p["name"] == "metrics");
        assert_eq!(
            metrics.map(|p| p["containerPort"].clone()),
            Some(json!(9090)),
            "{}",
            workload["metadata"]["name"]
        );
        assert_eq!(
            env(filestore, "FILESTORE_METRICS_LISTEN")["value"],
            "0.0.0.0:9090"
        );
    }
}
