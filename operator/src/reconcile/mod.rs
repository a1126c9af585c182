//! One reconcile of a FileStore, as a pipeline with I/O only at its ends: observe what exists,
//! decide (pure: [`plan`]), then apply every owned object with server-side apply, label the
//! database pods, write the status and record events.
pub mod conditions;
pub mod failover;
#[cfg(test)]
mod fixtures;
pub mod observed;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::build::secrets::{self, Credentials};
use crate::build::{self, BuildError, FIELD_MANAGER, Owned, names};
use crate::crd::{FileStore, FileStoreStatus, Provisioning};
pub use crate::error::Error;
use crate::queue_depth::QueueProbe;
use crate::role;
use observed::Observed;
use plan::{Notice, Pools};

/// Finalizer that lets the operator clean up before a FileStore goes.
pub const FINALIZER: &str = "filestore.dev/cleanup";
/// How often a FileStore is looked at without a change: the autoscaler's sampling period.
pub const POLL: Duration = Duration::from_secs(15);
const DEPTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub queue_probe: Arc<dyn QueueProbe>,
    pub pools: Mutex<Pools>,
    pub supervisors: Mutex<failover::Supervisors>,
    /// The cluster's DNS domain, for the names the managed backends know each other by.
    pub cluster_domain: String,
    started: Instant,
}

impl Context {
    pub fn new(client: Client, reporter: Reporter, queue_probe: Arc<dyn QueueProbe>) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            queue_probe,
            pools: Mutex::new(Pools::default()),
            supervisors: Mutex::new(failover::Supervisors::default()),
            cluster_domain: build::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            started: Instant::now(),
        }
    }

    /// The same context in the DNS domain `domain` (`cluster.local` unless told).
    pub fn with_cluster_domain(mut self, domain: &str) -> Self {
        self.cluster_domain = domain.trim_end_matches('.').to_owned();
        self
    }
}

/// The controller: FileStores in `namespace` (every namespace when empty), and the objects they
/// own, by the operator's managed-by label, so that a change to one reconciles its FileStore.
pub fn controller(client: &Client, namespace: &str) -> Controller<FileStore> {
    fn scoped<K>(client: &Client, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        if ns.is_empty() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), ns)
        }
    }
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        build::LABEL_MANAGED_BY,
        FIELD_MANAGER
    ));
    Controller::new(
        scoped::<FileStore>(client, namespace),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(client, namespace), owned.clone())
    .owns(scoped::<StatefulSet>(client, namespace), owned.clone())
    .owns(scoped::<Service>(client, namespace), owned.clone())
    .owns(scoped::<ConfigMap>(client, namespace), owned)
}

/// The controller's reconcile: the finalizer first, then apply or clean up.
pub async fn reconcile(fs: Arc<FileStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = fs
        .namespace()
        .ok_or(Error::Build(BuildError::NoNamespace))?;
    let api: Api<FileStore> = Api::namespaced(ctx.client.clone(), &namespace);
    let started = Instant::now();
    let result = finalizer(&api, FINALIZER, fs, |event| async {
        match event {
            finalizer::Event::Apply(fs) => apply(&fs, &ctx).await,
            finalizer::Event::Cleanup(fs) => cleanup(&fs, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    crate::metrics::reconciled(started.elapsed(), result.as_ref().err());
    result
}

/// What the controller does when a reconcile fails: log, count, try again later.
pub fn error_policy(fs: Arc<FileStore>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(filestore = %fs.name_any(), namespace = ?fs.namespace(), reason = error.reason(), %error, "reconcile failed");
    Action::requeue(error.requeue_after())
}

fn now() -> Time {
    Time(k8s_openapi::chrono::Utc::now())
}

async fn apply(fs: &FileStore, ctx: &Context) -> Result<Action, Error> {
    let ns = fs
        .namespace()
        .ok_or(Error::Build(BuildError::NoNamespace))?;
    let valid = match build::validate(fs) {
        Ok(valid) => valid,
        Err(invalid @ BuildError::InvalidSpec(_)) => {
            let (status, notice) = plan::invalid(fs, &invalid, &now());
            publish(ctx, fs, &[notice]).await;
            write_status(ctx, fs, &ns, &status).await?;
            return Ok(Action::await_change());
        }
        // Not the spec's fault (a resource not read from the API server): nothing to report
        // on it, try again.
        Err(other) => return Err(other.into()),
    };
    let mut seen = observe(ctx, fs, &ns).await?;
    let failover = ctx
        .supervisors
        .lock()
        .await
        .tick(&ctx.client, fs, &ns, &seen)
        .await;
    if let Some(outcome) = &failover {
        if outcome.moved_roles() {
            seen = observe(ctx, fs, &ns).await?;
        }
        seen.replication = Some(outcome.instances.clone());
    }
    let stored = seen
        .credentials
        .as_ref()
        .map(Credentials::from_secret)
        .unwrap_or_default();
    let (credentials, generated) = stored.complete(&fs.spec, &mut rand::thread_rng());
    let elapsed = ctx.started.elapsed();
    let (replicas, scaling) = ctx.pools.lock().await.scale(fs, &seen, elapsed);
    crate::metrics::pools(fs, &replicas, &seen);
    let inputs = build::Inputs {
        credentials,
        worker_replicas: replicas,
        cluster_domain: ctx.cluster_domain.clone(),
        ..build::Inputs::default()
    };
    let plan = plan::plan(&valid, &seen, inputs, &generated, scaling, &now());
    let generated_name = names::generated_secret(&fs.name_any());
    for object in &plan.objects {
        match object {
            Owned::Secret(secret) if secret.name_any() == generated_name => {
                write_credentials(
                    &ctx.client,
                    &ns,
                    secret,
                    seen.credentials.as_ref(),
                    &generated,
                )
                .await?;
            }
            _ => apply_owned(&ctx.client, &ns, object).await?,
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for (pod, role) in &plan.role_labels {
        match role::set(&pods, pod, *role).await {
            Ok(_) => {}
            // Gone since it was listed: the next reconcile labels its successor.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::from_kube("Pod", pod, e)),
        }
    }
    write_status(ctx, fs, &ns, &plan.status).await?;
    let failover_notice = failover.as_ref().and_then(|o| o.notice.clone());
    publish(ctx, fs, &plan.notices).await;
    publish(ctx, fs, failover_notice.as_slice()).await;
    let requeue = failover
        .as_ref()
        .and_then(failover::Outcome::requeue_within);
    Ok(Action::requeue(requeue.unwrap_or(POLL)))
}

/// Reads everything the plan depends on.
async fn observe(ctx: &Context, fs: &FileStore, ns: &str) -> Result<Observed, Error> {
    let client = &ctx.client;
    let name = fs.name_any();
    let mut seen = Observed {
        credentials: get(client, ns, &names::generated_secret(&name)).await?,
        api: get(client, ns, &names::api(&name)).await?,
        ..Observed::default()
    };
    for pool in &fs.spec.workers {
        if let Some(d) =
            get::<Deployment>(client, ns, &names::worker_pool(&name, &pool.name)).await?
        {
            seen.pools.insert(pool.name.clone(), d);
        }
    }
    if fs.spec.database.mode == Provisioning::Managed {
        seen.database = get(client, ns, &names::database(&name)).await?;
        let scripts: Option<ConfigMap> = get(client, ns, &names::database_scripts(&name)).await?;
        seen.database_marked_initialised = scripts
            .and_then(|c| c.data)
            .is_some_and(|d| d.get("initialised").map(String::as_str) == Some("true"));
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let selector = build::component_selector(&name, build::database::COMPONENT);
        seen.database_pods = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::from_kube("Pod", &selector, e))?
            .items;
    }
    if fs.spec.queue.mode == Provisioning::Managed {
        seen.queue = get(client, ns, &names::queue(&name)).await?;
    }
    seen.queue_depths = queue_depths(ctx, fs, ns, &seen).await;
    Ok(seen)
}

/// The stage queues' stats, when the broker can be reached; `None` before it exists.
async fn queue_depths(
    ctx: &Context,
    fs: &FileStore,
    ns: &str,
    seen: &Observed,
) -> Option<Result<BTreeMap<String, crate::queue_depth::QueueStats>, String>> {
    let url = match (&fs.spec.queue.mode, &fs.spec.queue.external) {
        (Provisioning::External, Some(external)) => {
            let secret: Secret = get(&ctx.client, ns, &external.url_secret.name)
                .await
                .ok()??;
            let data = secret.data?;
            String::from_utf8(data.get(&external.url_secret.key)?.0.clone()).ok()?
        }
        _ => {
            seen.queue.as_ref()?;
            let credentials = Credentials::from_secret(seen.credentials.as_ref()?);
            let password = credentials.get(secrets::QUEUE_PASSWORD)?;
            format!(
                "amqp://{}:{password}@{}.{ns}.svc.{}:{}/%2f",
                build::process::QUEUE_USER,
                names::queue(&fs.name_any()),
                ctx.cluster_domain,
                build::process::AMQP_PORT
            )
        }
    };
    let queues: Vec<&str> = crate::crd::Stage::ALL
        .iter()
        .map(|s| s.pipeline().queue())
        .collect();
    // A broker that accepts connections but never answers must not hold up the reconcile.
    Some(
        match tokio::time::timeout(DEPTH_TIMEOUT, ctx.queue_probe.depths(&url, &queues)).await {
            Ok(depths) => depths.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer from RabbitMQ within {DEPTH_TIMEOUT:?}")),
        },
    )
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| Error::from_kube(&K::kind(&()), name, e))
}

/// Server-side apply, forcing ownership of the fields the operator manages.
async fn ssa<K>(client: &Client, ns: &str, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = object.name_any();
    let manifest = build::manifest(object).map_err(|e| Error::Serialize {
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        message: e.to_string(),
    })?;
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&manifest),
        )
        .await
        .map_err(|e| Error::from_kube(&K::kind(&()), &name, e))?;
    Ok(())
}

/// The generated credentials are created once (a create, so that two writers cannot both
/// succeed) and later only extended, with the stored version as a precondition: whatever
/// happens, a stored key is never replaced.
async fn write_credentials(
    client: &Client,
    ns: &str,
    secret: &Secret,
    stored: Option<&Secret>,
    generated: &[&str],
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = secret.name_any();
    match stored {
        None => {
            api.create(&kube::api::PostParams::default(), secret)
                .await
                .map_err(|e| Error::from_kube("Secret", &name, e))?;
        }
        Some(_) if generated.is_empty() => {}
        Some(stored) => {
            let mut extended = secret.clone();
            extended.metadata.resource_version = stored.metadata.resource_version.clone();
            ssa(client, ns, &extended).await?;
        }
    }
    Ok(())
}

async fn apply_owned(client: &Client, ns: &str, object: &Owned) -> Result<(), Error> {
    match object {
        Owned::ConfigMap(o) => ssa::<ConfigMap>(client, ns, o).await,
        Owned::Secret(o) => ssa::<Secret>(client, ns, o).await,
        Owned::Service(o) => ssa::<Service>(client, ns, o).await,
        Owned::Deployment(o) => ssa::<Deployment>(client, ns, o).await,
        Owned::StatefulSet(o) => ssa::<StatefulSet>(client, ns, o).await,
        Owned::PodDisruptionBudget(o) => ssa::<PodDisruptionBudget>(client, ns, o).await,
        Owned::Ingress(o) => ssa::<Ingress>(client, ns, o).await,
    }
}

async fn write_status(
    ctx: &Context,
    fs: &FileStore,
    ns: &str,
    status: &FileStoreStatus,
) -> Result<(), Error> {
    let api: Api<FileStore> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": FileStore::api_version(&()),
        "kind": FileStore::kind(&()),
        "status": status,
    });
    api.patch_status(
        &fs.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::from_kube("FileStore", &fs.name_any(), e))?;
    Ok(())
}

/// Events are best effort: a lost event must not fail the reconcile that caused it.
async fn publish(ctx: &Context, fs: &FileStore, notices: &[Notice]) {
    let reference = fs.object_ref(&());
    for n in notices {
        let event = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.into(),
            note: Some(n.note.clone()),
            action: n.action.into(),
            secondary: None,
        };
        if n.warning {
            tracing::warn!(filestore = %fs.name_any(), reason = n.reason, "{}", n.note);
        } else {
            tracing::info!(filestore = %fs.name_any(), reason = n.reason, "{}", n.note);
        }
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = n.reason, "cannot record event");
        }
    }
}

/// Before the FileStore goes: owned objects go with it (owner references), volumes stay unless
/// the spec says otherwise, the generated credentials always stay (without the master key the
/// stored chunks cannot be read).
async fn cleanup(fs: &FileStore, ctx: &Context) -> Result<Action, Error> {
    let ns = fs
        .namespace()
        .ok_or(Error::Build(BuildError::NoNamespace))?;
    let name = fs.name_any();
    ctx.pools.lock().await.forget(&ns, &name);
    ctx.supervisors.lock().await.forget(&ns, &name);
    let db = &fs.spec.database;
    let note = if db.mode == Provisioning::Managed && !db.managed.retain_volumes {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = build::component_selector(&name, build::database::COMPONENT);
        claims
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&selector),
            )
            .await
            .map_err(|e| Error::from_kube("PersistentVolumeClaim", &selector, e))?;
        format!(
            "deleted the database volumes; kept Secret {}",
            names::generated_secret(&name)
        )
    } else {
        format!(
            "kept the volumes and Secret {}",
            names::generated_secret(&name)
        )
    };
    publish(
        ctx,
        fs,
        &[Notice {
            warning: false,
            reason: "CleanedUp",
            action: "Finalize",
            note,
        }],
    )
    .await;
    Ok(Action::await_change())
}
