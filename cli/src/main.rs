//! `filestore`: run the embedded service, mint development tokens, upload, download, inspect.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use filestore_api::ApiConfig;
use filestore_cli::client::Client;
use filestore_cli::download::{Target, download, local_name};
use filestore_cli::embedded::{self, EmbeddedConfig};
use filestore_cli::production::{self, ApiRoleConfig, SweepCommandConfig, WorkerRoleConfig};
use filestore_cli::sync::{self, SyncOptions, Syncer};
use filestore_cli::upload::{collect, upload, wait_settled};
use filestore_cli::{secrets, token};
use filestore_domain::FileStatus;
use filestore_worker::WorkerConfig;
use std::time::Duration;

const DEFAULT_DATA_DIR: &str = "./filestore-data";

#[derive(Parser)]
#[command(
    name = "filestore",
    version,
    about = "Self-hosted file storage and sync"
)]
struct Cli {
    /// API base URL.
    #[arg(
        long,
        global = true,
        env = "FILESTORE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token; defaults to ./filestore-data/dev-token when that file exists.
    #[arg(long, global = true, env = "FILESTORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the flattened configurations would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run API and workers in one process on the embedded default (SQLite, local disk,
    /// in-process queue).
    Dev {
        /// Where metadata, objects and secrets live.
        #[arg(long, env = "FILESTORE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// User the printed token is for.
        #[arg(long, default_value = "dev")]
        user: String,
        /// Master key id, with FILESTORE_MASTER_KEY (64 hex digits); generated when absent.
        #[arg(long, env = "FILESTORE_MASTER_KEY_ID", default_value = "env-1")]
        master_key_id: String,
        #[arg(
            long,
            env = "FILESTORE_MASTER_KEY",
            hide_env_values = true,
            hide = true
        )]
        master_key: Option<String>,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        worker: WorkerConfig,
    },
    /// Run the API role on the production backends (PostgreSQL, RabbitMQ, S3).
    Api(ApiRoleConfig),
    /// Run pipeline stages on the production backends; `--stages` picks which, so each stage
    /// scales on its own.
    Worker(WorkerRoleConfig),
    /// Remove chunk objects nothing needs from the production storage once, and report what
    /// was removed (workers also do this every --sweep-interval).
    Sweep(SweepCommandConfig),
    /// Mint a development token (HS256) for any user of an embedded deployment.
    Token {
        #[arg(long, env = "FILESTORE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        ttl: u64,
        #[arg(long, env = "FILESTORE_JWT_ISSUER", default_value = "filestore")]
        issuer: String,
        #[arg(long, env = "FILESTORE_JWT_AUDIENCE", default_value = "filestore")]
        audience: String,
    },
    /// Upload files and folders; prints each new file id on its own line.
    Upload {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Return once every file is ready (exit 1 if any ends otherwise).
        #[arg(long)]
        wait: bool,
        /// Print details as JSON instead of ids.
        #[arg(long)]
        json: bool,
        /// Files transferred at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Download files by id: chunks in parallel, decrypted and verified.
    Download {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Output file (one id), directory (several), or - for stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Chunks fetched at once.
        #[arg(long, default_value_t = 8)]
        parallelism: usize,
    },
    /// Show a file's metadata and processing status.
    Info {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what your files take: logical bytes and deduplicated stored bytes.
    Usage,
    /// Keep a local folder and your files on the server in sync, both ways; prints what each
    /// pass did as JSON. A true conflict keeps both versions (a conflicted copy beside it).
    Sync {
        dir: PathBuf,
        /// Keep running: sync whenever the folder or the server changes.
        #[arg(long)]
        watch: bool,
        /// Names this device in conflicted copies.
        #[arg(long, env = "FILESTORE_DEVICE")]
        device: Option<String>,
        /// Files transferred at once (small files are bound by round trips, so many).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// With --watch: a pass at least this often (seconds), should a notification be missed.
        #[arg(long, default_value_t = 300)]
        idle_secs: u64,
    },
    /// Time the pipeline's CPU work (chunk, hash, compress, encrypt) on every file of a folder,
    /// in memory on all cores: the bound `bench/pipeline.sh` compares ingest with. Prints JSON.
    #[command(hide = true)]
    BenchBound {
        dir: PathBuf,
        /// The worker's chunking and compression settings, as `filestore dev` takes them.
        #[command(flatten)]
        worker: WorkerConfig,
    },
}

/// This machine's name, for conflicted copies.
fn device_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this device".into())
}

fn token_or_default(token: Option<String>) -> anyhow::Result<String> {
    if let Some(t) = token {
        return Ok(t);
    }
    let path = PathBuf::from(DEFAULT_DATA_DIR).join("dev-token");
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .map_err(|_| {
            anyhow::anyhow!(
                "no token: pass --token, set FILESTORE_TOKEN, or run `filestore dev` here first"
            )
        })
}

/// Readers polling for the file never see it half-written.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev {
            data_dir,
            user,
            master_key_id,
            master_key,
            api,
            worker,
        } => {
            let issuer = api.jwt_issuer.clone();
            let audience = api.jwt_audience.clone();
            let running = embedded::start(EmbeddedConfig {
                data_dir: data_dir.clone(),
                api,
                worker,
                master_key: master_key.map(|k| (master_key_id, k)),
            })
            .await?;
            let dev_token = token::mint(
                &running.jwt_secret,
                &issuer,
                &audience,
                &user,
                30 * 24 * 3600,
            )?;
            let token_path = data_dir.join("dev-token");
            write_atomically(&token_path, dev_token.as_bytes())?;
            println!(
                "filestore is serving {} (data in {})",
                running.base_url(),
                data_dir.display()
            );
            if let Some(m) = running.metrics_addr {
                println!("metrics for Prometheus: http://{m}/metrics");
            }
            println!(
                "token for user {user:?} (also in {}):",
                token_path.display()
            );
            println!(
                "export FILESTORE_URL={} FILESTORE_TOKEN={dev_token}",
                running.base_url()
            );
            running.wait().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Api(cfg) => {
            production::run_api(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(cfg) => {
            production::run_worker(cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep(cfg) => {
            let report = production::run_sweep(cfg).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            data_dir,
            user,
            ttl,
            issuer,
            audience,
        } => {
            let secret = secrets::read_jwt_secret(&data_dir)?;
            println!("{}", token::mint(&secret, &issuer, &audience, &user, ttl)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            paths,
            wait,
            json,
            concurrency,
        } => {
            let client = Client::new(&cli.server, &token_or_default(cli.token)?)?;
            let files = collect(&paths)?;
            let mut results = upload(&client, files, concurrency).await?;
            if wait {
                wait_settled(&client, &mut results).await?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    println!("{}", r.file_id);
                }
            }
            let unready: Vec<_> = results
                .iter()
                .filter(|r| wait && r.status != FileStatus::Ready)
                .collect();
            for r in &unready {
                eprintln!("{} ({}) ended {}", r.path, r.file_id, r.status);
            }
            Ok(if unready.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Download {
            ids,
            output,
            parallelism,
        } => {
            let client = Client::new(&cli.server, &token_or_default(cli.token)?)?;
            let stdout = output.as_deref() == Some(std::path::Path::new("-"));
            if stdout && ids.len() > 1 {
                bail!("- (stdout) takes one id");
            }
            if ids.len() > 1
                && let Some(dir) = &output
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            for id in &ids {
                let d = client
                    .descriptor(id)
                    .await
                    .with_context(|| format!("file {id}"))?;
                let target = match (&output, ids.len()) {
                    (Some(_), _) if stdout => Target::Stdout,
                    (Some(p), 1) => Target::File(p.clone()),
                    (Some(dir), _) => Target::File(dir.join(local_name(&d.path))),
                    (None, _) => Target::File(PathBuf::from(local_name(&d.path))),
                };
                download(&client, d, target, parallelism)
                    .await
                    .with_context(|| format!("file {id}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { id, json } => {
            let client = Client::new(&cli.server, &token_or_default(cli.token)?)?;
            let meta = client.metadata_json(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&meta)?);
            } else {
                for key in [
                    "fileId",
                    "path",
                    "size",
                    "sha256",
                    "contentType",
                    "status",
                    "reason",
                    "createdAt",
                    "updatedAt",
                ] {
                    let value = &meta[key];
                    if !value.is_null() {
                        println!(
                            "{key:<12} {}",
                            value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned)
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchBound { dir, worker } => {
            let bound =
                filestore_cli::bound::measure(&dir, worker.chunk_params()?, worker.codec())?;
            println!("{}", serde_json::to_string(&bound)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Usage => {
            let client = Client::new(&cli.server, &token_or_default(cli.token)?)?;
            println!("{}", serde_json::to_string_pretty(&client.usage().await?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync {
            dir,
            watch,
            device,
            concurrency,
            idle_secs,
        } => {
            let client = Client::new(&cli.server, &token_or_default(cli.token)?)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let opts = SyncOptions {
                root: dir.canonicalize()?,
                host: device.unwrap_or_else(device_name),
                concurrency,
            };
            let syncer = Syncer::open(client, &cli.server, opts).await?;
            if watch {
                let print = |r: &sync::Report| {
                    if r.did_work() || !r.failed.is_empty() || !r.refused.is_empty() {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    }
                };
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                sync::watch::watch(&syncer, Duration::from_secs(idle_secs), print, stop).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let report = syncer.until_settled(50).await?;
            println!("{}", serde_json::to_string(&report)?);
            for f in &report.failed {
                eprintln!("not synced yet: {f}");
            }
            for r in &report.refused {
                eprintln!("refused: {r}");
            }
            Ok(if report.failed.is_empty() && report.waiting == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FILESTORE_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
