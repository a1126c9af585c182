//! The committed CRD is the one the types generate, it carries what `kubectl` and the API server
//! need, and the example resource fits it.
use std::path::Path;

use filestore_operator::crd::{FileStore, ImageSpec, Provisioning, Stage, crd_yaml};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_committed_crd_is_not_stale() {
    assert!(
        repo_file("crds/filestore.yaml") == crd_yaml().unwrap(),
        "crds/filestore.yaml is stale: run `cargo run -p filestore-operator --bin crdgen > crds/filestore.yaml`"
    );
}

#[test]
fn the_crd_has_a_status_subresource_printer_columns_and_cross_field_rules() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "API", "Workers", "Primary", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rule = |path: &serde_json::Value| {
        path["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        rule(&spec["workers"]["items"]),
        "self.minReplicas <= self.maxReplicas"
    );
    assert!(rule(&spec["workers"]).contains("self.exists(p, s in p.stages)"));
    assert_eq!(
        rule(&spec["database"]["properties"]["managed"]),
        "self.synchronousStandbys < self.instances"
    );
    assert_eq!(
        spec["database"]["properties"]["managed"]["properties"]["instances"]["default"],
        3
    );
}

#[test]
fn the_example_parses_and_omitted_fields_take_their_defaults() {
    let example: FileStore = serde_yaml::from_str(&repo_file("examples/filestore.yaml")).unwrap();
    let spec = &example.spec;
    assert_eq!(spec.database.mode, Provisioning::Managed);
    assert_eq!(spec.database.managed.instances, 3);
    assert_eq!(spec.database.managed.failover_delay_seconds, 30);
    assert!(spec.database.managed.retain_volumes);
    let pools: Vec<(&str, &[Stage])> = spec
        .workers
        .iter()
        .map(|p| (p.name.as_str(), p.stages.as_slice()))
        .collect();
    assert_eq!(
        pools,
        [
            ("scan", &[Stage::Scan][..]),
            ("pipeline", &[Stage::Chunk, Stage::Index][..])
        ]
    );
    assert_eq!(spec.object_storage.region, "us-east-1");
    assert!(spec.encryption.master_key_secret.is_none());
}

#[test]
fn a_minimal_filestore_takes_the_same_defaults_in_rust_as_in_the_schema() {
    let minimal: FileStore = serde_yaml::from_str(
        "apiVersion: filestore.dev/v1alpha1
kind: FileStore
metadata: {name: files}
spec:
  objectStorage: {rawBucket: r, chunkBucket: c, credentialsSecret: s}
",
    )
    .unwrap();
    let spec = &minimal.spec;
    assert_eq!(spec.api.replicas, 2);
    assert_eq!(spec.workers.len(), 1);
    assert_eq!(spec.workers[0].name, "all");
    assert_eq!(spec.workers[0].max_replicas, 10);
    assert_eq!(spec.queue.replicas, 3);
    assert_eq!(spec.database.managed.synchronous_standbys, 1);
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(props["api"]["properties"]["replicas"]["default"], 2);
    assert_eq!(props["queue"]["properties"]["replicas"]["default"], 3);
}

#[test]
fn the_chart_installs_the_same_crd() {
    assert!(
        repo_file("charts/filestore-operator/crds/filestore.yaml") == crd_yaml().unwrap(),
        "charts/filestore-operator/crds/filestore.yaml is stale: copy crds/filestore.yaml there"
    );
}

#[test]
fn the_chart_the_default_images_and_the_release_name_one_version() {
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("charts/filestore-operator/Chart.yaml")).unwrap();
    let app_version = chart["appVersion"].as_str().expect("an appVersion");
    let release = "the tag a release publishes (.github/workflows/release.yml)";
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion is the workspace version, {release}"
    );
    let values: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("charts/filestore-operator/values.yaml")).unwrap();
    assert_eq!(
        values["image"]["tag"], "",
        "the operator image defaults to the chart's appVersion"
    );
    let defaults = ImageSpec::default();
    assert_eq!(
        defaults.tag, app_version,
        "a FileStore runs the Filestore image of the operator's version"
    );
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let image = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["image"];
    assert_eq!(image["properties"]["tag"]["default"], app_version);
    assert_eq!(image["default"]["tag"], app_version);
    // The release workflow publishes exactly the repositories the defaults name.
    let workflow = repo_file(".github/workflows/release.yml");
    let repository = |r: &str| r.rsplit('/').next().unwrap().to_owned();
    for name in [
        repository(&defaults.repository),
        repository(values["image"]["repository"].as_str().unwrap()),
    ] {
        assert!(
            workflow.contains(&format!("/{name}:${{{{ steps.version.outputs.version }}}}")),
            "the release workflow publishes {name}"
        );
    }
    assert!(workflow.contains("platforms: linux/amd64,linux/arm64"));
}
