//! The `filestore` command as scripts use it: ids on stdout, `--wait`, `--json`, downloads to a
//! file, a folder or stdout, against a real `filestore dev`.
use std::process::{Command, Output};

use filestore_tests::process::{
    DevProcess, SMALL_CHUNK_FLAGS, data_dir_in, filestore_bin, free_port,
};
use filestore_tests::{noise, sha256_hex};
use serde_json::Value;

fn filestore(dev: &DevProcess, args: &[&str]) -> Output {
    let out = Command::new(filestore_bin())
        .env("FILESTORE_URL", &dev.base)
        .env("FILESTORE_TOKEN", &dev.token)
        .args(args)
        .output()
        .expect("run filestore");
    assert!(
        out.status.success(),
        "filestore {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn upload_wait_info_and_every_download_target() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevProcess::start(&data_dir_in(&dir), free_port(), &SMALL_CHUNK_FLAGS);

    let tree = dir.path().join("photos");
    std::fs::create_dir_all(tree.join("2024")).unwrap();
    let big = noise(3_000_000, 1);
    std::fs::write(tree.join("2024/big.raw"), &big).unwrap();
    std::fs::write(tree.join("notes.txt"), b"remember the milk").unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();

    let tree_arg = tree.to_str().unwrap();
    let json: Value =
        serde_json::from_slice(&filestore(&dev, &["upload", tree_arg, "--wait", "--json"]).stdout)
            .unwrap();
    let files = json.as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["photos/2024/big.raw", "photos/empty", "photos/notes.txt"]
    );
    assert!(files.iter().all(|f| f["status"] == "ready"));

    let single = dir.path().join("one.txt");
    std::fs::write(&single, b"just one").unwrap();
    let ids = stdout_lines(&filestore(
        &dev,
        &["upload", single.to_str().unwrap(), "--wait"],
    ));
    assert_eq!(ids.len(), 1, "one id per line");
    let info: Value =
        serde_json::from_slice(&filestore(&dev, &["info", &ids[0], "--json"]).stdout).unwrap();
    assert_eq!(info["status"], "ready");
    assert_eq!(info["sha256"], sha256_hex(b"just one"));

    let big_id = files[0]["fileId"].as_str().unwrap();
    let to_stdout = filestore(&dev, &["download", big_id, "-o", "-"]);
    assert_eq!(to_stdout.stdout, big);

    let copy = dir.path().join("copy.raw");
    filestore(&dev, &["download", big_id, "-o", copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), big);

    let out_dir = dir.path().join("out");
    let all: Vec<&str> = files
        .iter()
        .map(|f| f["fileId"].as_str().unwrap())
        .collect();
    let mut args = vec!["download"];
    args.extend(&all);
    args.extend(["-o", out_dir.to_str().unwrap()]);
    filestore(&dev, &args);
    assert_eq!(std::fs::read(out_dir.join("big.raw")).unwrap(), big);
    assert_eq!(
        std::fs::read(out_dir.join("notes.txt")).unwrap(),
        b"remember the milk"
    );
    assert_eq!(std::fs::read(out_dir.join("empty")).unwrap(), b"");
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".filestore-partial")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn upload_wait_fails_when_a_file_ends_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevProcess::start(&data_dir_in(&dir), free_port(), &[]);
    let eicar = dir.path().join("eicar.com");
    std::fs::write(
        &eicar,
        br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    )
    .unwrap();
    let out = Command::new(filestore_bin())
        .env("FILESTORE_URL", &dev.base)
        .env("FILESTORE_TOKEN", &dev.token)
        .args(["upload", eicar.to_str().unwrap(), "--wait"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended quarantined"));
    let id = stdout_lines(&out).pop().unwrap();
    let refused = Command::new(filestore_bin())
        .env("FILESTORE_URL", &dev.base)
        .env("FILESTORE_TOKEN", &dev.token)
        .args([
            "download",
            &id,
            "-o",
            dir.path().join("x").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("file_quarantined"));
}
