//! Every end-to-end test in one binary. Each test binary links the whole workspace, so one per
//! file cost most of a test run's build time and disk; the files here are its modules.
//!
//! They run in one process, in parallel (as many at once as the machine has cores), which each
//! test must allow for: its own namespace in the shared services (`Namespace::create`), its own
//! private services when it stops and starts them (`PrivateServices`), no process-wide state
//! such as environment variables, the current directory or a global tracing subscriber, and
//! ports from `free_port` rather than fixed ones.
#![forbid(unsafe_code)]

mod auth;
mod backends;
mod bad_input;
mod bundle;
mod chunk_sweep;
mod cli;
mod crash;
mod failover;
mod hardening;
mod openapi;
mod operator_failover_pods;
mod operator_postgres_start;
mod operator_queue_depth;
mod outages;
mod pipeline;
mod production;
mod production_crash;
mod roundtrip;
mod sync;
mod tree;
mod tree_api;

/// `autotests = false` makes a file in this directory that is not declared above silently not
/// compile, its tests never run: this fails instead.
#[test]
fn every_file_here_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let declared: Vec<&str> = include_str!("e2e.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .expect("the tests directory")
        .flatten()
    {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        if is_rust && stem != "e2e" && !declared.contains(&stem) {
            missing.push(stem.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "not declared in tests/tests/e2e.rs, so never built or run: {missing:?}"
    );
}
