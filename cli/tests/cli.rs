//! The `filestore` binary's own behaviour at its edges. (These also make `cargo test` build the
//! binary that the end-to-end tests run.)
use std::process::Command;

fn filestore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_filestore"))
}

#[test]
fn help_lists_every_command() {
    let out = filestore().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["dev", "token", "upload", "download", "info", "usage"] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
}

#[test]
fn a_token_for_a_data_dir_that_was_never_started_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = filestore()
        .args(["token", "--user", "alice", "--data-dir"])
        .arg(dir.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has `filestore dev --data-dir"));
}

#[test]
fn upload_without_a_server_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"x").unwrap();
    let out = filestore()
        .current_dir(dir.path())
        .args(["--server", "http://127.0.0.1:9", "--token", "t", "upload"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

#[test]
fn upload_of_a_missing_path_names_it() {
    let out = filestore()
        .args(["--token", "t", "upload", "/definitely/not/here"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/not/here"));
}
