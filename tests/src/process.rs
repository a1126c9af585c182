//! The real `filestore` binary as a child process, for tests that kill it.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/filestore`, built beside the test binaries (`cargo test --workspace`
/// builds it, because the CLI crate has integration tests).
pub fn filestore_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("filestore");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p filestore-cli` (or the whole `cargo test --workspace`) first",
        bin.display()
    );
    bin
}

/// `filestore dev` flags for chunks small enough that test files of a few MiB span many.
pub const SMALL_CHUNK_FLAGS: [&str; 6] = [
    "--chunk-min",
    "65536",
    "--chunk-avg",
    "262144",
    "--chunk-max",
    "1048576",
];

/// A fresh data directory inside `dir`.
pub fn data_dir_in(dir: &tempfile::TempDir) -> PathBuf {
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("create the data directory");
    data
}

pub struct DevProcess {
    pub child: Child,
    pub base: String,
    pub token: String,
}

pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program` run as `user` when we are root (PostgreSQL refuses to run as root), as ourselves
/// otherwise.
pub fn command_as(user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl DevProcess {
    /// Starts `filestore dev` and waits until it serves and has written its token.
    pub fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
        let _ = std::fs::remove_file(data_dir.join("dev-token"));
        let child = Command::new(filestore_bin())
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // Tests run several services at once: metrics on any free port, not 9090.
            .env("FILESTORE_METRICS_LISTEN", "127.0.0.1:0")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn filestore dev");
        // Owned from here on, so a failed wait below still kills and reaps the child.
        let mut dev = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if let (true, Ok(token)) = (up, std::fs::read_to_string(data_dir.join("dev-token"))) {
                dev.token = token;
                return dev;
            }
            assert!(Instant::now() < deadline, "filestore dev did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
