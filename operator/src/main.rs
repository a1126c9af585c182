//! `filestore-operator`: reconciles FileStore resources (while it holds the leader lease), and
//! serves /metrics, /healthz and /readyz. `filestore-operator render` prints the objects a
//! FileStore would own, without a cluster.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand};
use filestore_operator::build::secrets::Credentials;
use filestore_operator::build::{self, Inputs};
use filestore_operator::crd::FileStore;
use filestore_operator::leader::Election;
use filestore_operator::queue_depth::RabbitProbe;
use filestore_operator::reconcile::{self, Context};
use futures::StreamExt;
use kube::Client;
use kube::runtime::events::Reporter;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "filestore-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile FileStores (the default).
    Run,
    /// Print every object the operator would own for the FileStore in FILE.
    Render {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The cluster's DNS domain.
        #[arg(
            long,
            env = "FILESTORE_OPERATOR_CLUSTER_DOMAIN",
            default_value = build::DEFAULT_CLUSTER_DOMAIN
        )]
        cluster_domain: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunConfig {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "FILESTORE_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    listen: SocketAddr,
    /// Watch FileStores in this namespace only; all namespaces when empty.
    #[arg(long, env = "FILESTORE_OPERATOR_WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(
        long,
        env = "FILESTORE_OPERATOR_LEASE",
        default_value = "filestore-operator"
    )]
    lease_name: String,
    /// This replica's name in the Lease and in events.
    #[arg(long, env = "POD_NAME", default_value = "filestore-operator")]
    identity: String,
    /// Seconds a leader may go without renewing before another replica takes over.
    #[arg(long, env = "FILESTORE_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// The cluster's DNS domain (the kubelet's `clusterDomain`): RabbitMQ nodes find each
    /// other by fully qualified names in it.
    #[arg(
        long,
        env = "FILESTORE_OPERATOR_CLUSTER_DOMAIN",
        default_value = build::DEFAULT_CLUSTER_DOMAIN,
        value_parser = dns_domain
    )]
    cluster_domain: String,
    /// `json` for structured logs, `text` for people.
    #[arg(long, env = "FILESTORE_OPERATOR_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Render {
            file,
            cluster_domain,
        }) => render(
            &file,
            &dns_domain(&cluster_domain).map_err(anyhow::Error::msg)?,
        ),
        Some(Command::Run) | None => run(cli.run).await,
    }
}

/// A DNS domain as the kubelet takes one: labels of letters, digits and hyphens; a trailing
/// dot is dropped.
fn dns_domain(text: &str) -> Result<String, String> {
    let domain = text.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if domain.is_empty() || !domain.split('.').all(label_ok) {
        return Err(format!("{text:?} is not a DNS domain"));
    }
    Ok(domain)
}

fn render(file: &std::path::Path, cluster_domain: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut fs: FileStore =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    // Rendering outside a cluster: stand in for what the API server would have set.
    fs.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    fs.metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    let (credentials, _) = Credentials::default().complete(&fs.spec, &mut rand::thread_rng());
    let inputs = Inputs {
        credentials,
        cluster_domain: cluster_domain.to_owned(),
        ..Inputs::default()
    };
    // JSON documents: valid YAML that no YAML 1.1 reader can misread (`off` as false).
    let valid = build::validate(&fs)?;
    for object in build::build_all(&valid, &inputs) {
        println!(
            "---\n{}",
            serde_json::to_string_pretty(&object.to_manifest()?)?
        );
    }
    Ok(())
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FILESTORE_LOG")
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    init_logs(&cfg.log_format);
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    filestore_operator::install_tls_provider();
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let (leading_tx, mut leading) = watch::channel(false);
    let election = Election::new(
        client.clone(),
        &cfg.lease_namespace,
        &cfg.lease_name,
        &cfg.identity,
        Duration::from_secs(cfg.lease_seconds.max(3)),
    );
    tokio::spawn(election.run(leading_tx));
    tracing::info!(identity = %cfg.identity, "waiting for the leader lease");
    leading
        .wait_for(|l| *l)
        .await
        .context("leader election stopped")?;
    tracing::info!(identity = %cfg.identity, "leading: reconciling FileStores");

    let reporter = Reporter {
        controller: "filestore-operator".into(),
        instance: Some(cfg.identity.clone()),
    };
    let ctx = Arc::new(
        Context::new(client.clone(), reporter, Arc::new(RabbitProbe))
            .with_cluster_domain(&cfg.cluster_domain),
    );
    let controller = reconcile::controller(&client, &cfg.watch_namespace)
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile error");
            }
        });
    tokio::select! {
        () = controller => Ok(()),
        lost = leading.wait_for(|l| !*l) => {
            // Another replica may lead now: stop at once rather than reconcile beside it.
            let _ = lost;
            anyhow::bail!("lost the leader lease; exiting so that only one replica reconciles")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dns_domain;

    #[test]
    fn a_cluster_domain_is_a_dns_name_without_its_trailing_dot() {
        assert_eq!(dns_domain("cluster.local").as_deref(), Ok("cluster.local"));
        assert_eq!(dns_domain("Corp.Example.").as_deref(), Ok("corp.example"));
        for bad in [
            "",
            ".",
            "a..b",
            "-corp.example",
            "corp_example",
            "corp.example/x",
        ] {
            assert!(dns_domain(bad).is_err(), "{bad:?}");
        }
    }
}
