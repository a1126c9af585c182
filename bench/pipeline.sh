#!/usr/bin/env bash
# End-to-end ingest benchmark: filestore vs restic, side by side, in one run.
#
# Generates a deterministic mixed corpus once (about half incompressible bytes, half text-like;
# a few large files plus many small files in subfolders), then runs ROUNDS rounds, each
#   1. filestore: `filestore upload <corpus> --wait` against a server started fresh for the
#      round on empty storage. The clock stops once every file is processed: chunked,
#      compressed, encrypted and stored.
#        MODE=embedded    `filestore dev` (SQLite, local disk, in-process queue)
#        MODE=production  `filestore api` + `filestore worker` on PostgreSQL, RabbitMQ and an
#                         S3 server (s3s-fs) started by scripts/services.sh; each round gets
#                         its own database, RabbitMQ vhost and buckets. Malware scanning is
#                         the workers' default (the built-in scanner); CLAMD=1 uses clamd.
#   2. restic: `restic backup <corpus>` into a fresh repository: a local directory in
#      embedded mode; in production mode a new bucket on the same S3 server
#      (s3:http://127.0.0.1:PORT/BUCKET), or a local directory when restic cannot use that
#      server (a probe backup says so, and why).
#   3. the bound: `filestore bench-bound <corpus>`, the same chunk + hash + compress + encrypt
#      work on every file in one process on all cores with no I/O: the most the pipeline could
#      do on this machine ("bound: n/a" when the binary has no such subcommand).
# and reports per round: wall time, throughput (MiB/s of corpus), stored bytes, the peak RSS of
# the server processes (VmHWM; api and worker separately in production mode) and of the
# client, the CPU seconds of the measured processes and what share of all cores that is, and
# how busy the whole machine was (/proc/stat; in production mode that includes PostgreSQL,
# RabbitMQ and S3). Then the medians over the rounds: each tool's throughput, the ratio of the
# medians, the median of the per-round ratios, the bound and filestore's fraction of it.
#
# Absolute numbers depend on the machine and on what else it is doing; the ratio of the two
# tools, measured in alternating rounds on the same corpus in the same run, is the figure to
# compare across runs. Both tools run with their default settings and a warm page cache; a
# `sync` precedes every measurement, so one round's write-back does not land in the next.
#
# Usage: bench/pipeline.sh
# Environment:
#   FILESTORE_BIN  filestore binary to use (default: cargo build --release, target/release/filestore)
#   CORPUS_MB      approximate corpus size in MiB (default 1024)
#   SEED           corpus seed (default 1); same seed and generator -> same bytes
#   ROUNDS         rounds of filestore, restic, bound (default 3)
#   MODE           embedded (default) or production
#   CLAMD=1        production mode: workers scan with clamd (started by scripts/services.sh)
#                  instead of the built-in scanner, their default
#   SERVICES_DIR   production mode: use (or start) the services of
#                  `scripts/services.sh start SERVICES_DIR` and leave them running; default: a
#                  private set, started for this run and stopped at its end. A missing s3s-fs
#                  is built by scripts/services.sh with `cargo install` (minutes, once).
#   KEEP=1         keep the temporary directory (corpus, every round's data, repositories,
#                  logs) and, in production mode, each round's database, vhost and buckets;
#                  a private S3 store is moved into the temporary directory at the end
#   TMPDIR         where the temporary directory is created (needs about 3x CORPUS_MB free;
#                  with KEEP=1 about (1 + 2 x ROUNDS) x CORPUS_MB)
set -euo pipefail

CORPUS_MB=${CORPUS_MB:-1024}
SEED=${SEED:-1}
KEEP=${KEEP:-0}
ROUNDS=${ROUNDS:-3}
MODE=${MODE:-embedded}
CLAMD=${CLAMD:-0}

if ! [[ $CORPUS_MB =~ ^[0-9]+$ ]] || ((CORPUS_MB < 1)); then
    echo "CORPUS_MB must be a positive integer (MiB), got '$CORPUS_MB'" >&2
    exit 2
fi
if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS < 1)); then
    echo "ROUNDS must be a positive integer, got '$ROUNDS'" >&2
    exit 2
fi
case $MODE in
    embedded | production) ;;
    *) echo "MODE must be embedded or production, got '$MODE'" >&2; exit 2 ;;
esac

for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null || (cd "$script_dir/.." && pwd))

# --- binaries ---------------------------------------------------------------------------
if [[ -n ${FILESTORE_BIN:-} ]]; then
    BIN=$FILESTORE_BIN
else
    echo "building filestore (release)..." >&2
    (cd "$repo_root" && cargo build --release -p filestore-cli)
    BIN=$repo_root/target/release/filestore
fi
[[ -x $BIN ]] || { echo "filestore binary not found or not executable: $BIN" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

if ! command -v restic >/dev/null; then
    echo "installing restic..." >&2
    if ! apt-get install -y restic >&2; then
        apt-get update >&2
        apt-get install -y restic >&2
    fi
fi

# --- temp dir, cleanup --------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/filestore-bench.XXXXXX")
PIDS=()         # long-running processes this script started (servers)
SERVICES=       # services directory (production mode)
OWN_SERVICES=0  # 1: started for this run, stopped at its end

# Stops one process: TERM, up to 5 s, then KILL.
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops the given processes and forgets them.
stop_servers() {
    local pid keep=() p
    for pid in "$@"; do
        stop_pid "$pid"
    done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    PIDS=(${keep[@]+"${keep[@]}"})
}

cleanup() {
    local rc=$?
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        stop_pid "$pid"
    done
    if [[ $OWN_SERVICES == 1 ]]; then
        if [[ $KEEP == 1 && -n ${FILESTORE_TEST_S3_ROOT:-} && -d ${FILESTORE_TEST_S3_ROOT:-} ]]; then
            mv "$FILESTORE_TEST_S3_ROOT" "$TMP/s3" 2>/dev/null || true
        fi
        "$repo_root/scripts/services.sh" stop "$SERVICES" >/dev/null 2>&1 || true
        rm -rf "$SERVICES" "$SERVICES.lock"
    fi
    if [[ $KEEP == 1 ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CORPUS=$TMP/corpus
mkdir -p "$CORPUS"
RECORDS=$TMP/rounds.jsonl
: >"$RECORDS"

# Shows a log's tail and fails.
die_with_log() {
    echo "$1" >&2
    [[ -f ${2:-} ]] && tail -n 40 "$2" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
hex32() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# --- measuring ------------------------------------------------------------------------------
# measure.py OUT CMD...: runs CMD and writes its wall time and, from getrusage, the CPU seconds
# and peak RSS (KiB) of it and its children to OUT as JSON.
cat >"$TMP/measure.py" <<'EOF'
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
rc = subprocess.call(cmd)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss, "rc": rc}, f)
sys.exit(rc if rc >= 0 else 128 - rc)
EOF
measured() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

TICK=$(getconf CLK_TCK)
NCPU=$(nproc)
# "busy total" jiffies of all cores since boot (busy: everything but idle and iowait).
machine_jiffies() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit}' /proc/stat; }
busy_pct() { # busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1"
    awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2];
        printf "%.1f", (t > 0) ? 100 * (y[1] - x[1]) / t : 0}'
}
# CPU seconds (user + system) a process has used so far.
proc_cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$TICK" '{printf "%.2f", ($12 + $13) / hz}'; }
# Peak resident set size of a running process, KiB.
proc_hwm() { awk '/^VmHWM:/ {print $2; exit}' "/proc/$1/status"; }
stored_bytes() { du -sbc "$@" 2>/dev/null | tail -1 | cut -f1; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }

# Same starting point for every measurement: the whole corpus in the page cache, nothing
# dirty waiting to be written back.
settle() {
    find "$CORPUS" -type f -exec cat {} + >/dev/null
    sync
}

# --- corpus --------------------------------------------------------------------------------
# Random bytes come from AES-128-CTR over zeros (openssl, key and IV derived from the seed and
# the file name) or, without openssl, from Python's random.Random(seed).randbytes; the two
# generators give different bytes, each deterministic. Text comes from a seeded pseudo-word
# vocabulary with a skewed word distribution.
echo "generating ~${CORPUS_MB} MiB corpus (seed $SEED)..." >&2
gen_start=$(date +%s.%N)
python3 "$script_dir/corpus.py" "$CORPUS" "$CORPUS_MB" "$SEED"
gen_end=$(date +%s.%N)

corpus_bytes=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s}')
corpus_files=$(find "$CORPUS" -type f | wc -l)
awk -v b="$corpus_bytes" -v f="$corpus_files" -v s="$gen_start" -v e="$gen_end" \
    'BEGIN {printf "corpus ready: %.1f MiB, %d files (%.1f s)\n", b / 1048576, f, e - s}' >&2

# --- production services -------------------------------------------------------------------
RUN_ID=$$
if [[ $MODE == production ]]; then
    only=postgres,rabbitmq,s3
    if [[ $CLAMD == 1 ]]; then only+=,clamd; fi
    if [[ -n ${SERVICES_DIR:-} ]]; then
        SERVICES=$SERVICES_DIR
    else
        # Its own directory beside $TMP: PostgreSQL runs as the postgres user, which cannot
        # enter $TMP (mode 0700).
        SERVICES=$(mktemp -d "${TMPDIR:-/tmp}/filestore-bench-services.XXXXXX")
        OWN_SERVICES=1
    fi
    if ! command -v s3s-fs >/dev/null && [[ ! -x ${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs ]] &&
        ! "$repo_root/scripts/services.sh" status "$SERVICES" --only "$only" >/dev/null 2>&1; then
        echo "s3s-fs is missing: scripts/services.sh builds it (cargo install, minutes, once)" >&2
    fi
    echo "starting services ($only) in $SERVICES..." >&2
    "$repo_root/scripts/services.sh" start "$SERVICES" --only "$only" >/dev/null ||
        { echo "scripts/services.sh start $SERVICES --only $only failed" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$SERVICES/env"
    for var in FILESTORE_TEST_PG_URL FILESTORE_TEST_PG_BIN FILESTORE_TEST_AMQP_URL \
        FILESTORE_TEST_RABBIT_NODE FILESTORE_TEST_RABBIT_HOME FILESTORE_TEST_S3_ENDPOINT \
        FILESTORE_TEST_S3_ACCESS_KEY FILESTORE_TEST_S3_SECRET_KEY; do
        [[ -n ${!var:-} ]] || { echo "$SERVICES/env does not set $var" >&2; exit 1; }
    done
    if [[ $CLAMD == 1 && -z ${FILESTORE_TEST_CLAMD:-} ]]; then
        echo "$SERVICES/env does not set FILESTORE_TEST_CLAMD" >&2
        exit 1
    fi
    S3_ROOT=${FILESTORE_TEST_S3_ROOT:-}
    psql_() { "$FILESTORE_TEST_PG_BIN/psql" "$FILESTORE_TEST_PG_URL" -qAtX -v ON_ERROR_STOP=1 "$@"; }
    rabbitmqctl_() {
        HOME=$FILESTORE_TEST_RABBIT_HOME /usr/lib/rabbitmq/bin/rabbitmqctl \
            -n "$FILESTORE_TEST_RABBIT_NODE" "$@"
    }
    PROD_JWT=$(hex32)
    export FILESTORE_MASTER_KEY FILESTORE_URL_SIGNING_KEY FILESTORE_JWT_SECRET
    FILESTORE_MASTER_KEY=$(hex32)
    FILESTORE_URL_SIGNING_KEY=$(hex32)
    FILESTORE_JWT_SECRET=$PROD_JWT
    export FILESTORE_S3_ENDPOINT=$FILESTORE_TEST_S3_ENDPOINT \
        FILESTORE_S3_ACCESS_KEY=$FILESTORE_TEST_S3_ACCESS_KEY \
        FILESTORE_S3_SECRET_KEY=$FILESTORE_TEST_S3_SECRET_KEY FILESTORE_S3_CREATE_BUCKETS=true
    if [[ $CLAMD == 1 ]]; then
        export FILESTORE_CLAMD=$FILESTORE_TEST_CLAMD
    else
        unset FILESTORE_CLAMD
    fi
    # Tokens are minted with the API's secret, through `filestore token`.
    mkdir -p "$TMP/prod/secrets"
    printf '%s' "$PROD_JWT" >"$TMP/prod/secrets/jwt-secret"
    PROD_TOKEN=$("$BIN" token --data-dir "$TMP/prod" --user bench)
fi

# --- restic target -------------------------------------------------------------------------
export RESTIC_PASSWORD=bench
restic_args=()
if restic backup --help 2>/dev/null | grep -q -- '--no-scan'; then
    restic_args+=(--no-scan)
fi
RESTIC_S3=0
restic_note="local repository"
if [[ $MODE == production ]]; then
    export AWS_ACCESS_KEY_ID=$FILESTORE_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$FILESTORE_TEST_S3_SECRET_KEY
    restic_s3_opts=()
    restic_opts=$(restic options 2>/dev/null || true)
    if [[ $restic_opts == *s3.region* ]]; then restic_s3_opts+=(-o s3.region=us-east-1); fi
    if [[ $restic_opts == *s3.bucket-lookup* ]]; then restic_s3_opts+=(-o s3.bucket-lookup=path); fi
    # A small backup first: restic retries a failing backend for minutes, so each step has a
    # time limit here, and any failure sends the rounds to a local repository instead.
    probe_bucket=restic-$RUN_ID-probe
    probe_repo=s3:$FILESTORE_TEST_S3_ENDPOINT/$probe_bucket
    probe_log=$TMP/restic-s3-probe.log
    echo "probing restic on $probe_repo..." >&2
    if RESTIC_CACHE_DIR=$TMP/restic-cache-probe timeout 120 \
        restic -r "$probe_repo" ${restic_s3_opts[@]+"${restic_s3_opts[@]}"} init >"$probe_log" 2>&1 &&
        RESTIC_CACHE_DIR=$TMP/restic-cache-probe timeout 120 \
            restic -r "$probe_repo" ${restic_s3_opts[@]+"${restic_s3_opts[@]}"} backup "$script_dir" >>"$probe_log" 2>&1 &&
        RESTIC_CACHE_DIR=$TMP/restic-cache-probe timeout 120 \
            restic -r "$probe_repo" ${restic_s3_opts[@]+"${restic_s3_opts[@]}"} check >>"$probe_log" 2>&1; then
        RESTIC_S3=1
        restic_note="S3 bucket per round on $FILESTORE_TEST_S3_ENDPOINT (same server as filestore)"
    else
        restic_note="local repository (restic could not use the S3 server at $FILESTORE_TEST_S3_ENDPOINT; see below)"
        {
            echo "restic cannot use the S3 server at $FILESTORE_TEST_S3_ENDPOINT; comparing with a local repository instead. restic said:"
            grep -v '^\s*$' "$probe_log" | tail -n 15 | sed 's/^/  /'
        } | tee "$TMP/restic-s3-why.txt" >&2
    fi
    if [[ -n $S3_ROOT && $KEEP != 1 ]]; then rm -rf "${S3_ROOT:?}/$probe_bucket"; fi
fi

# --- one round of each ---------------------------------------------------------------------
# Waits for a URL to answer 2xx while the process lives.
wait_ready() { # wait_ready URL PID LOG WHAT
    for _ in $(seq 600); do
        kill -0 "$2" 2>/dev/null || die_with_log "$4 exited early" "$3"
        curl -sf "$1" >/dev/null && return 0
        sleep 0.1
    done
    die_with_log "$4 did not come up ($1)" "$3"
}

# Uploads the corpus with `filestore upload --wait`, measured; sets UP_* and checks the ids.
run_upload() { # run_upload ROUND URL TOKEN
    local r=$1
    FILESTORE_URL=$2 FILESTORE_TOKEN=$3 python3 "$TMP/measure.py" "$TMP/r$r-upload.json" \
        "$BIN" upload "$CORPUS" --wait >"$TMP/r$r-ids.txt" 2>"$TMP/r$r-upload.log" ||
        die_with_log "filestore upload failed (round $r)" "$TMP/r$r-upload.log"
    local n
    n=$(grep -c . "$TMP/r$r-ids.txt" || true)
    if [[ $n != "$corpus_files" ]]; then
        echo "filestore returned $n ids for $corpus_files files (round $r)" >&2
        exit 1
    fi
    UP_WALL=$(measured "$TMP/r$r-upload.json" wall)
    UP_CPU=$(measured "$TMP/r$r-upload.json" cpu)
    UP_RSS=$(measured "$TMP/r$r-upload.json" maxrss_kib)
}

filestore_round_embedded() {
    local r=$1 port data url pid token log j0 j1 c0 c1 rss
    port=$(free_port)
    data=$TMP/r$r-data
    log=$TMP/r$r-server.log
    url=http://127.0.0.1:$port
    FILESTORE_METRICS_LISTEN=127.0.0.1:0 "$BIN" dev --data-dir "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # The token file is written after the server is up, then the `export ...` line is printed.
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || die_with_log "filestore dev exited early" "$log"
        if curl -sf "$url/healthz" >/dev/null && [[ -s $data/dev-token ]] &&
            grep -q FILESTORE_TOKEN= "$log"; then
            break
        fi
        sleep 0.1
    done
    [[ -s $data/dev-token ]] || die_with_log "filestore dev did not come up on $url" "$log"
    token=$(<"$data/dev-token")

    echo "round $r/$ROUNDS: filestore upload --wait (embedded)..." >&2
    settle
    j0=$(machine_jiffies)
    c0=$(proc_cpu "$pid")
    run_upload "$r" "$url" "$token"
    c1=$(proc_cpu "$pid")
    j1=$(machine_jiffies)
    kill -0 "$pid" 2>/dev/null || die_with_log "filestore dev died during round $r" "$log"
    rss=$(proc_hwm "$pid")
    stop_servers "$pid"
    local stored
    stored=$(stored_bytes "$data/objects")
    [[ $KEEP == 1 ]] || rm -rf "$data"
    printf '{"round":%d,"tool":"filestore","seconds":%s,"stored":%s,"server_cpu":%s,"client_cpu":%s,"client_rss_kib":%s,"busy_pct":%s,"rss_kib":{"server":%s}}\n' \
        "$r" "$UP_WALL" "$stored" "$(fsub "$c1" "$c0")" "$UP_CPU" "$UP_RSS" "$(busy_pct "$j0" "$j1")" "$rss" >>"$RECORDS"
}

filestore_round_production() {
    local r=$1 db vhost raw chunks port wport url api worker alog wlog
    local j0 j1 a0 a1 w0 w1 arss wrss stored=-1
    db=fsbench_${RUN_ID}_r$r
    vhost=fsbench-$RUN_ID-r$r
    raw=fsbench-$RUN_ID-r$r-raw
    chunks=fsbench-$RUN_ID-r$r-chunks
    alog=$TMP/r$r-api.log
    wlog=$TMP/r$r-worker.log
    psql_ -c "CREATE DATABASE $db" >/dev/null || { echo "cannot create database $db" >&2; exit 1; }
    if ! { rabbitmqctl_ add_vhost "$vhost" &&
        rabbitmqctl_ set_permissions -p "$vhost" guest '.*' '.*' '.*'; } >"$TMP/r$r-vhost.log" 2>&1; then
        die_with_log "cannot create RabbitMQ vhost $vhost" "$TMP/r$r-vhost.log"
    fi
    port=$(free_port)
    wport=$(free_port)
    url=http://127.0.0.1:$port
    export FILESTORE_DATABASE_URL=${FILESTORE_TEST_PG_URL%/*}/$db
    export FILESTORE_AMQP_URL=${FILESTORE_TEST_AMQP_URL%/*}/$vhost
    export FILESTORE_S3_RAW_BUCKET=$raw FILESTORE_S3_CHUNK_BUCKET=$chunks

    FILESTORE_LISTEN=127.0.0.1:$port FILESTORE_METRICS_LISTEN=127.0.0.1:$(free_port) \
        "$BIN" api >"$alog" 2>&1 &
    api=$!
    PIDS+=("$api")
    wait_ready "$url/readyz" "$api" "$alog" "filestore api"
    FILESTORE_METRICS_LISTEN=127.0.0.1:$wport "$BIN" worker >"$wlog" 2>&1 &
    worker=$!
    PIDS+=("$worker")
    wait_ready "http://127.0.0.1:$wport/readyz" "$worker" "$wlog" "filestore worker"

    echo "round $r/$ROUNDS: filestore upload --wait (production: api + worker)..." >&2
    settle
    j0=$(machine_jiffies)
    a0=$(proc_cpu "$api")
    w0=$(proc_cpu "$worker")
    run_upload "$r" "$url" "$PROD_TOKEN"
    a1=$(proc_cpu "$api")
    w1=$(proc_cpu "$worker")
    j1=$(machine_jiffies)
    kill -0 "$api" 2>/dev/null || die_with_log "filestore api died during round $r" "$alog"
    kill -0 "$worker" 2>/dev/null || die_with_log "filestore worker died during round $r" "$wlog"
    arss=$(proc_hwm "$api")
    wrss=$(proc_hwm "$worker")
    stop_servers "$worker" "$api"
    if [[ -n $S3_ROOT ]]; then
        stored=$(stored_bytes "$S3_ROOT/$raw" "$S3_ROOT/$chunks")
        [[ $KEEP == 1 ]] || rm -rf "${S3_ROOT:?}/$raw" "${S3_ROOT:?}/$chunks"
    fi
    if [[ $KEEP != 1 ]]; then
        psql_ -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        rabbitmqctl_ delete_vhost "$vhost" >/dev/null 2>&1 || true
    fi
    printf '{"round":%d,"tool":"filestore","seconds":%s,"stored":%s,"server_cpu":%s,"client_cpu":%s,"client_rss_kib":%s,"busy_pct":%s,"rss_kib":{"api":%s,"worker":%s}}\n' \
        "$r" "$UP_WALL" "$stored" "$(fsub "$a1" "$a0" | awk -v w="$(fsub "$w1" "$w0")" '{printf "%.2f", $1 + w}')" \
        "$UP_CPU" "$UP_RSS" "$(busy_pct "$j0" "$j1")" "$arss" "$wrss" >>"$RECORDS"
}

restic_round() {
    local r=$1 repo stored=-1 j0 j1 where
    local -a opts=()
    export RESTIC_CACHE_DIR=$TMP/r$r-restic-cache
    if [[ $RESTIC_S3 == 1 ]]; then
        where=restic-$RUN_ID-r$r
        repo=s3:$FILESTORE_TEST_S3_ENDPOINT/$where
        opts=(${restic_s3_opts[@]+"${restic_s3_opts[@]}"})
    else
        where=$TMP/r$r-restic-repo
        repo=$where
    fi
    restic init --repo "$repo" ${opts[@]+"${opts[@]}"} >"$TMP/r$r-restic-init.log" 2>&1 ||
        die_with_log "restic init failed (round $r)" "$TMP/r$r-restic-init.log"

    echo "round $r/$ROUNDS: restic backup..." >&2
    settle
    j0=$(machine_jiffies)
    python3 "$TMP/measure.py" "$TMP/r$r-restic.json" \
        restic backup --repo "$repo" ${opts[@]+"${opts[@]}"} ${restic_args[@]+"${restic_args[@]}"} "$CORPUS" \
        >"$TMP/r$r-restic.log" 2>&1 || die_with_log "restic backup failed (round $r)" "$TMP/r$r-restic.log"
    j1=$(machine_jiffies)
    if [[ $RESTIC_S3 == 1 ]]; then
        if [[ -n $S3_ROOT ]]; then
            stored=$(stored_bytes "$S3_ROOT/$where")
            [[ $KEEP == 1 ]] || rm -rf "${S3_ROOT:?}/$where"
        fi
    else
        stored=$(stored_bytes "$where")
        [[ $KEEP == 1 ]] || rm -rf "$where"
    fi
    [[ $KEEP == 1 ]] || rm -rf "$RESTIC_CACHE_DIR"
    printf '{"round":%d,"tool":"restic","seconds":%s,"stored":%s,"client_cpu":%s,"client_rss_kib":%s,"busy_pct":%s}\n' \
        "$r" "$(measured "$TMP/r$r-restic.json" wall)" "$stored" "$(measured "$TMP/r$r-restic.json" cpu)" \
        "$(measured "$TMP/r$r-restic.json" maxrss_kib)" "$(busy_pct "$j0" "$j1")" >>"$RECORDS"
}

BOUND=1   # 0 once `filestore bench-bound` turned out missing or broken
BOUND_WHY=
bound_round() {
    local r=$1 line
    [[ $BOUND == 1 ]] || return 0
    echo "round $r/$ROUNDS: filestore bench-bound..." >&2
    settle
    if "$BIN" bench-bound "$CORPUS" >"$TMP/r$r-bound.out" 2>"$TMP/r$r-bound.log" &&
        line=$(python3 -c '
import json, sys
for line in reversed(open(sys.argv[1]).read().splitlines()):
    if line.startswith("{"):
        d = json.loads(line)
        for k in ("bytes", "files", "seconds", "mib_per_s"):
            float(d[k])
        print(json.dumps(d))
        break
else:
    sys.exit("no JSON line")' "$TMP/r$r-bound.out" 2>>"$TMP/r$r-bound.log"); then
        printf '{"round":%d,"tool":"bound","result":%s}\n' "$r" "$line" >>"$RECORDS"
    else
        BOUND=0
        BOUND_WHY=$(cat "$TMP/r$r-bound.log" "$TMP/r$r-bound.out" | grep -v '^\s*$' | head -n 1 | cut -c1-200)
        echo "bound: n/a (${BOUND_WHY:-no output})" >&2
    fi
}

for round in $(seq "$ROUNDS"); do
    "filestore_round_$MODE" "$round"
    restic_round "$round"
    bound_round "$round"
done

# --- report --------------------------------------------------------------------------------
echo
echo "filestore pipeline benchmark ($MODE mode, seed $SEED, $NCPU CPUs, $ROUNDS round$( ((ROUNDS > 1)) && echo s))"
echo "filestore: $("$BIN" --version) ($BIN)"
if [[ $MODE == production ]]; then
    echo "services:  PostgreSQL, RabbitMQ, S3 at $FILESTORE_TEST_S3_ENDPOINT (scripts/services.sh $SERVICES); scanner: $([[ $CLAMD == 1 ]] && echo clamd || echo built-in)"
fi
echo "restic:    $(restic version)${restic_args[*]:+ (backup ${restic_args[*]})}, $restic_note"
if [[ -s $TMP/restic-s3-why.txt ]]; then
    sed 's/^/           /' "$TMP/restic-s3-why.txt"
fi
python3 - "$RECORDS" "$corpus_bytes" "$corpus_files" "$NCPU" "$ROUNDS" "$BOUND_WHY" <<'EOF'
import json, sys
records, corpus_bytes, files, ncpu, rounds, bound_why = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rows = [json.loads(line) for line in open(records) if line.strip()]
MIB = 1048576
mib = corpus_bytes / MIB

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def stored(b):
    return "stored n/a" if b < 0 else f"stored {b / MIB:.1f} MiB ({100 * b / corpus_bytes:.1f}% of corpus)"

def cpu_share(cpu, seconds):
    return 100 * cpu / (seconds * ncpu)

print(f"corpus: {mib:.1f} MiB, {files} files")
fs = {r["round"]: r for r in rows if r["tool"] == "filestore"}
rs = {r["round"]: r for r in rows if r["tool"] == "restic"}
bd = {r["round"]: r["result"] for r in rows if r["tool"] == "bound"}
ratios, fractions = [], []
for n in range(1, rounds + 1):
    f, r, b = fs[n], rs[n], bd.get(n)
    fr, rr = mib / f["seconds"], mib / r["seconds"]
    rss = ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in f["rss_kib"].items())
    cpu = f["server_cpu"] + f["client_cpu"]
    servers = "+".join(f["rss_kib"])
    print(f"round {n}:")
    print(f"  filestore: {f['seconds']:.2f} s, {fr:.1f} MiB/s, {stored(f['stored'])}")
    print(f"             peak RSS {rss}, client {f['client_rss_kib'] / 1024:.1f} MiB; "
          f"CPU {cpu:.1f} s ({servers} {f['server_cpu']:.1f}, client {f['client_cpu']:.1f}) = "
          f"{cpu_share(cpu, f['seconds']):.0f}% of {ncpu} cores; machine busy {f['busy_pct']:.0f}%")
    print(f"  restic:    {r['seconds']:.2f} s, {rr:.1f} MiB/s, {stored(r['stored'])}")
    print(f"             peak RSS {r['client_rss_kib'] / 1024:.1f} MiB; CPU {r['client_cpu']:.1f} s = "
          f"{cpu_share(r['client_cpu'], r['seconds']):.0f}% of {ncpu} cores; machine busy {r['busy_pct']:.0f}%")
    if b:
        fractions.append(fr / b["mib_per_s"])
        print(f"  bound:     {b['seconds']:.2f} s, {b['mib_per_s']:.1f} MiB/s; filestore at {100 * fractions[-1]:.0f}% of it")
    else:
        print("  bound:     n/a")
    ratios.append(fr / rr)
    print(f"  ratio (filestore/restic throughput): {ratios[-1]:.2f}")

fm = median([mib / f["seconds"] for f in fs.values()])
rm = median([mib / r["seconds"] for r in rs.values()])
print()
print(f"median of {rounds} round{'s' if rounds > 1 else ''}:")
fcpu = median([cpu_share(f["server_cpu"] + f["client_cpu"], f["seconds"]) for f in fs.values()])
fbusy = median([f["busy_pct"] for f in fs.values()])
peaks = {k: max(f["rss_kib"][k] for f in fs.values()) for k in next(iter(fs.values()))["rss_kib"]}
peak = ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in peaks.items())
print(f"filestore: {fm:.1f} MiB/s ({mib / fm:.2f} s); CPU {fcpu:.0f}% of {ncpu} cores, machine busy {fbusy:.0f}%; "
      f"peak RSS (max of rounds) {peak}")
rcpu = median([cpu_share(r["client_cpu"], r["seconds"]) for r in rs.values()])
rbusy = median([r["busy_pct"] for r in rs.values()])
rpeak = max(r["client_rss_kib"] for r in rs.values())
print(f"restic:    {rm:.1f} MiB/s ({mib / rm:.2f} s); CPU {rcpu:.0f}% of {ncpu} cores, machine busy {rbusy:.0f}%; "
      f"peak RSS (max of rounds) {rpeak / 1024:.1f} MiB")
if bd:
    bm = median([b["mib_per_s"] for b in bd.values()])
    print(f"bound:     {bm:.1f} MiB/s (filestore bench-bound, median of {len(bd)})")
    print(f"filestore / bound (ratio of medians): {fm / bm:.2f}; median of per-round fractions: {median(fractions):.2f}")
else:
    print("bound: n/a" + (f" ({bound_why})" if bound_why else ""))
print(f"ratio of medians (filestore/restic throughput): {fm / rm:.2f}")
print(f"median of per-round ratios: {median(ratios):.2f}")
EOF
