//! Kubernetes RBAC as the API server applies it to the operator's own requests, as pure
//! functions: what a request asks for (verb, API group, resource, subresource, namespace and
//! name, read from its HTTP method and path as the API server's RequestInfo reads them), and
//! whether a set of Roles, ClusterRoles and their bindings (the chart, rendered) allows it to a
//! ServiceAccount. The tests check every call the operator makes against the rendered chart, so
//! a call the chart does not allow fails the suite instead of a failover on a real cluster.
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{kind} {name}: {message}")]
    Object {
        kind: String,
        name: String,
        message: String,
    },
}

/// One request as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    /// `None` for cluster-scoped requests and for lists and watches across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(sub) = &self.subresource {
            write!(f, "/{sub}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in {ns}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

impl Request {
    /// The request an HTTP call to a resource path makes: `/api/v1/...` (the core group) or
    /// `/apis/<group>/<version>/...`, optionally `namespaces/<ns>/`, then the resource, a name
    /// and a subresource. `None` for paths that name no resource (discovery, `/version`).
    pub fn from_http(method: &str, path: &str, query: &str) -> Option<Request> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        // `namespaces/<ns>` alone is the Namespace object; followed by more, it scopes them.
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            _ => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
            _ => return None,
        };
        let watching = query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1");
        let verb = match (method, name.is_some()) {
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) if watching => "watch",
            ("GET" | "HEAD", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(Request {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.map(str::to_owned),
            namespace,
            name: name.map(str::to_owned),
        })
    }
}

/// Where a granted rule applies: one namespace (a RoleBinding) or every one.
#[derive(Debug, Clone)]
enum Scope {
    Namespace(String),
    Cluster,
}

/// What one ServiceAccount may do, from the RBAC objects among some manifests.
#[derive(Debug, Clone)]
pub struct Policy {
    granted: Vec<(Scope, PolicyRule)>,
}

#[derive(Deserialize)]
struct Header {
    kind: Option<String>,
}

fn object<T: serde::de::DeserializeOwned>(
    kind: &str,
    doc: serde_yaml::Value,
) -> Result<T, RbacError> {
    let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
    serde_yaml::from_value(doc).map_err(|e| RbacError::Object {
        kind: kind.to_owned(),
        name,
        message: e.to_string(),
    })
}

fn names_account(subjects: Option<&Vec<Subject>>, namespace: &str, name: &str) -> bool {
    subjects.into_iter().flatten().any(|s| {
        s.kind == "ServiceAccount" && s.name == name && s.namespace.as_deref() == Some(namespace)
    })
}

impl Policy {
    /// The rules the ServiceAccount `namespace/name` is bound to in `manifests` (YAML
    /// documents, as `helm template` prints them).
    pub fn for_service_account(
        manifests: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Policy, RbacError> {
        let mut roles = Vec::new();
        let mut cluster_roles = Vec::new();
        let mut bindings = Vec::new();
        let mut cluster_bindings = Vec::new();
        for document in serde_yaml::Deserializer::from_str(manifests) {
            let doc = serde_yaml::Value::deserialize(document)?;
            if doc.is_null() {
                continue;
            }
            let header: Header = serde_yaml::from_value(doc.clone())?;
            match header.kind.as_deref() {
                Some("Role") => roles.push(object::<Role>("Role", doc)?),
                Some("ClusterRole") => {
                    cluster_roles.push(object::<ClusterRole>("ClusterRole", doc)?)
                }
                Some("RoleBinding") => bindings.push(object::<RoleBinding>("RoleBinding", doc)?),
                Some("ClusterRoleBinding") => {
                    cluster_bindings.push(object::<ClusterRoleBinding>("ClusterRoleBinding", doc)?)
                }
                _ => {}
            }
        }
        let cluster_rules = |role: &str| {
            cluster_roles
                .iter()
                .filter(|r| r.metadata.name.as_deref() == Some(role))
                .flat_map(|r| r.rules.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        let mut granted = Vec::new();
        for binding in &bindings {
            if !names_account(binding.subjects.as_ref(), namespace, name) {
                continue;
            }
            let Some(ns) = binding.metadata.namespace.clone() else {
                continue;
            };
            let rules = match binding.role_ref.kind.as_str() {
                "Role" => roles
                    .iter()
                    .filter(|r| {
                        r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref() == Some(ns.as_str())
                    })
                    .flat_map(|r| r.rules.clone().unwrap_or_default())
                    .collect(),
                "ClusterRole" => cluster_rules(&binding.role_ref.name),
                _ => Vec::new(),
            };
            granted.extend(rules.into_iter().map(|r| (Scope::Namespace(ns.clone()), r)));
        }
        for binding in &cluster_bindings {
            if binding.role_ref.kind == "ClusterRole"
                && names_account(binding.subjects.as_ref(), namespace, name)
            {
                granted.extend(
                    cluster_rules(&binding.role_ref.name)
                        .into_iter()
                        .map(|r| (Scope::Cluster, r)),
                );
            }
        }
        Ok(Policy { granted })
    }

    /// Whether some granted rule allows `request`.
    pub fn allows(&self, request: &Request) -> bool {
        self.granted.iter().any(|(scope, rule)| {
            let in_scope = match scope {
                Scope::Cluster => true,
                Scope::Namespace(ns) => request.namespace.as_deref() == Some(ns.as_str()),
            };
            in_scope && rule_allows(rule, request)
        })
    }
}

fn rule_allows(rule: &PolicyRule, request: &Request) -> bool {
    let has = |list: Option<&Vec<String>>, wanted: &str| {
        list.into_iter().flatten().any(|v| v == "*" || v == wanted)
    };
    let resource = match &request.subresource {
        Some(sub) => format!("{}/{sub}", request.resource),
        None => request.resource.clone(),
    };
    let named = match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => request
            .name
            .as_ref()
            .is_some_and(|n| names.iter().any(|allowed| allowed == n)),
    };
    rule.verbs.iter().any(|v| v == "*" || *v == request.verb)
        && has(rule.api_groups.as_ref(), &request.group)
        && has(rule.resources.as_ref(), &resource)
        && named
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: &str) -> Request {
        Request::from_http(method, path, query).expect("a resource path")
    }

    #[test]
    fn requests_are_read_from_method_and_path_as_the_api_server_reads_them() {
        let get = request("GET", "/api/v1/namespaces/prod/pods/files-db-0", "");
        assert_eq!(
            (get.verb.as_str(), get.group.as_str(), get.resource.as_str()),
            ("get", "", "pods")
        );
        assert_eq!(get.namespace.as_deref(), Some("prod"));
        assert_eq!(get.name.as_deref(), Some("files-db-0"));
        let status = request(
            "PATCH",
            "/apis/filestore.dev/v1alpha1/namespaces/prod/filestores/files/status",
            "fieldManager=x",
        );
        assert_eq!(status.subresource.as_deref(), Some("status"));
        assert_eq!(status.group, "filestore.dev");
        assert_eq!(
            request("GET", "/apis/apps/v1/deployments", "watch=true").verb,
            "watch"
        );
        let across = request("GET", "/apis/apps/v1/deployments", "");
        assert_eq!((across.verb.as_str(), across.namespace), ("list", None));
        assert_eq!(
            request(
                "DELETE",
                "/api/v1/namespaces/prod/persistentvolumeclaims",
                ""
            )
            .verb,
            "deletecollection"
        );
        let namespace = request("GET", "/api/v1/namespaces/prod", "");
        assert_eq!(
            (namespace.resource.as_str(), namespace.name.as_deref()),
            ("namespaces", Some("prod"))
        );
        assert!(Request::from_http("GET", "/version", "").is_none());
    }

    const CHART: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: op, namespace: prod}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "patch"]
  - apiGroups: ["filestore.dev"]
    resources: ["filestores/status"]
    verbs: ["patch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    resourceNames: ["only-this"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: op, namespace: prod}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: op}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: leases}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: someone-else}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leases}
subjects: [{kind: ServiceAccount, name: other, namespace: ops}]
"#;

    #[test]
    fn a_role_allows_its_verbs_on_its_resources_in_its_namespace_only() {
        let policy = Policy::for_service_account(CHART, "ops", "op").unwrap();
        let allows = |m: &str, p: &str| policy.allows(&request(m, p, ""));
        assert!(allows("PATCH", "/api/v1/namespaces/prod/pods/files-db-0"));
        assert!(
            !allows("DELETE", "/api/v1/namespaces/prod/pods/files-db-0"),
            "a verb the rule does not list"
        );
        assert!(
            !allows("GET", "/api/v1/namespaces/staging/pods/files-db-0"),
            "another namespace"
        );
        assert!(!allows("GET", "/api/v1/pods"), "across all namespaces");
        assert!(allows(
            "PATCH",
            "/apis/filestore.dev/v1alpha1/namespaces/prod/filestores/files/status"
        ));
        assert!(
            !allows(
                "PATCH",
                "/apis/filestore.dev/v1alpha1/namespaces/prod/filestores/files"
            ),
            "the status subresource is not the resource"
        );
        assert!(allows(
            "GET",
            "/api/v1/namespaces/prod/configmaps/only-this"
        ));
        assert!(!allows("GET", "/api/v1/namespaces/prod/configmaps/another"));
        assert!(
            !allows(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op"
            ),
            "a ClusterRole bound to another account"
        );
    }
}
