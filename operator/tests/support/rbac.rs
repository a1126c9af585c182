//! The chart's RBAC, rendered by `helm template` (default values, and `watchNamespace` set to
//! the namespace the tests use), as the policy each request the operator makes in a test must
//! pass. Shared by the operator's mocked-API tests and, through `#[path]`, the tests crate's.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use filestore_operator::rbac::{Policy, Request};

/// The namespace the chart is rendered into (the operator's own, where its Lease lives).
pub const OPERATOR_NAMESPACE: &str = "filestore-system";
const RELEASE: &str = "filestore-operator";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// helm as scripts/validate-manifests.sh finds it (it runs before the tests and installs it):
/// on PATH, or where that script puts it.
fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("HELM") {
        return path.into();
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v helm"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(path) = on_path.filter(|p| !p.is_empty()) {
        return path.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let installed = target.join("tools/helm/helm");
    assert!(
        installed.exists(),
        "helm is missing: run scripts/validate-manifests.sh once (it installs helm into {})",
        installed.display()
    );
    installed
}

/// The chart under test: the repository's, or `FILESTORE_RBAC_CHART` (to check another
/// version of it, an older one say).
fn chart() -> PathBuf {
    std::env::var("FILESTORE_RBAC_CHART")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("charts/filestore-operator"))
}

fn render(values: &[&str]) -> Policy {
    let mut cmd = Command::new(helm());
    cmd.args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", OPERATOR_NAMESPACE]);
    for v in values {
        cmd.args(["--set", v]);
    }
    let out = cmd.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    let account = service_account(&manifests);
    Policy::for_service_account(&manifests, OPERATOR_NAMESPACE, &account)
        .expect("the chart's RBAC parses")
}

/// The ServiceAccount the operator's Deployment runs as.
fn service_account(manifests: &str) -> String {
    for document in manifests.split("\n---") {
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(document) else {
            continue;
        };
        let account = doc["spec"]["template"]["spec"]["serviceAccountName"].as_str();
        if let (Some("Deployment"), Some(name)) = (doc["kind"].as_str(), account) {
            return name.to_owned();
        }
    }
    panic!("the chart renders no Deployment with a serviceAccountName");
}

/// The namespace the tests' FileStores live in, and the one the chart is told to watch.
pub const WATCHED: &str = "prod";

/// A way of installing the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Default values: a ClusterRole, every namespace watched.
    Default,
    /// `watchNamespace` set to [`WATCHED`]: a Role there.
    Watching,
}

/// The chart's policy for each way of installing it, rendered once per test binary.
fn chart_policies() -> &'static [(Install, String, Policy)] {
    static POLICIES: OnceLock<Vec<(Install, String, Policy)>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let watching = format!("watchNamespace={WATCHED}");
        vec![
            (Install::Default, "default values".to_owned(), render(&[])),
            (Install::Watching, watching.clone(), render(&[&watching])),
        ]
    })
}

/// Fails, listing them, when the chart installed as `installs` says does not allow some of
/// `requests`: each is (HTTP method, path, query).
pub fn assert_allowed_by<'a>(
    installs: &[Install],
    requests: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) {
    let requests: Vec<Request> = requests
        .into_iter()
        .map(|(method, path, query)| {
            Request::from_http(method, path, query)
                .unwrap_or_else(|| panic!("{method} {path} is not a resource request"))
        })
        .collect();
    let mut refused = Vec::new();
    for (install, label, policy) in chart_policies() {
        if !installs.contains(install) {
            continue;
        }
        for request in &requests {
            if !policy.allows(request) {
                refused.push(format!("{label}: {request}"));
            }
        }
    }
    refused.sort();
    refused.dedup();
    assert!(
        refused.is_empty(),
        "the chart's RBAC does not allow what the operator does:\n  {}",
        refused.join("\n  ")
    );
}

/// [`assert_allowed_by`] for the chart installed either way: requests in [`WATCHED`] and in
/// the operator's own namespace must be allowed by both.
pub fn assert_chart_allows<'a>(requests: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) {
    assert_allowed_by(&[Install::Default, Install::Watching], requests);
}
