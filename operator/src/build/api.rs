//! The API: a Deployment behind a Service, a PodDisruptionBudget so voluntary disruptions
//! leave it serving, and an Ingress when the spec asks for one.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ContainerPort, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{self, env, env_from_secret, mount};
use super::{Owned, Owner, TokenKeys, ValidatedFileStore, names, process, secrets, workers};

pub const COMPONENT: &str = "api";
pub const PORT: i32 = 8080;
const JWT_KEY_DIR: &str = "/etc/filestore/jwt";

pub fn build(fs: &ValidatedFileStore<'_>, config_hash: &str) -> Vec<Owned> {
    let owner = &fs.owner;
    let mut out = vec![
        Owned::Deployment(deployment(fs, config_hash)),
        Owned::Service(service(owner)),
        Owned::PodDisruptionBudget(pod::disruption_budget(
            owner,
            names::api(&owner.name),
            COMPONENT,
            1,
        )),
    ];
    if let Some(wanted) = &fs.spec.api.ingress {
        out.push(Owned::Ingress(ingress(owner, wanted)));
    }
    out
}

pub fn deployment(fs: &ValidatedFileStore<'_>, config_hash: &str) -> Deployment {
    let (owner, spec) = (&fs.owner, fs.spec);
    let generated = names::generated_secret(&owner.name);
    let mut vars = vec![
        env("FILESTORE_LISTEN", format!("0.0.0.0:{PORT}")),
        // Metrics have a listener of their own, off the port the Ingress exposes.
        env(
            "FILESTORE_METRICS_LISTEN",
            format!("0.0.0.0:{}", workers::METRICS_PORT),
        ),
        // TLS ends at the Ingress; the API is reached over the cluster network only.
        env("FILESTORE_ALLOW_PLAIN_HTTP", "true"),
        env_from_secret(
            "FILESTORE_URL_SIGNING_KEY",
            &generated,
            secrets::URL_SIGNING_KEY,
        ),
    ];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    match fs.token_keys {
        // The key set's URL reaches the API through the settings.
        TokenKeys::Jwks => {}
        TokenKeys::PublicKey(secret) => {
            vars.push(env(
                "FILESTORE_JWT_PUBLIC_KEY",
                format!("{JWT_KEY_DIR}/publicKey"),
            ));
            volumes.push(Volume {
                name: "jwt-key".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_owned()),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(mount("jwt-key", JWT_KEY_DIR, true));
        }
        TokenKeys::Generated => vars.push(env_from_secret(
            "FILESTORE_JWT_SECRET",
            &generated,
            secrets::JWT_SECRET,
        )),
    }
    let mut container = process::container(fs, &["api"], ("http", PORT), vars);
    container.resources = spec.api.resources.clone();
    if let Some(ports) = container.ports.as_mut() {
        ports.push(ContainerPort {
            name: Some("metrics".into()),
            container_port: workers::METRICS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        });
    }
    if let Some(m) = container.volume_mounts.as_mut() {
        m.extend(mounts);
    }
    let labels = owner.selector(COMPONENT);
    Deployment {
        metadata: owner.meta(names::api(&owner.name), COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.api.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            // Never fewer serving replicas than asked for during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: process::pod_template(labels, config_hash, container, volumes),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub fn service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(names::api(&owner.name), COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(owner.selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn ingress(owner: &Owner, wanted: &crate::crd::IngressSpec) -> Ingress {
    let mut meta = owner.meta(names::api(&owner.name), COMPONENT);
    // Uploads are streamed: no body limit or buffering at the proxy.
    meta.annotations = Some(BTreeMap::from([
        (
            "nginx.ingress.kubernetes.io/proxy-body-size".to_owned(),
            "0".to_owned(),
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-request-buffering".to_owned(),
            "off".to_owned(),
        ),
    ]));
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: wanted.class_name.clone(),
            tls: wanted.tls_secret.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![wanted.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(wanted.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::api(&owner.name),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}
