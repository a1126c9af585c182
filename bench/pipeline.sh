#!/usr/bin/env bash
# End-to-end ingest benchmark: filestore vs restic, side by side, in one run.
#
# Generates a deterministic mixed corpus (about half incompressible bytes, half text-like;
# a few large files plus many small files in subfolders), then measures
#   1. `filestore upload <corpus> --wait` against a local `filestore dev` (embedded service:
#      SQLite, local disk, in-process queue). The clock stops once every file is processed:
#      chunked, compressed, encrypted and stored.
#   2. `restic backup <corpus>` into a fresh local repository.
# and reports wall time, throughput (MiB/s of corpus), stored bytes, and the throughput ratio.
#
# Absolute numbers depend on the machine and on what else it is doing; the ratio of the two
# tools, measured back to back on the same corpus in the same run, is the figure to compare
# across runs. Both tools run with their default settings and a warm page cache.
#
# Usage: bench/pipeline.sh
# Environment:
#   FILESTORE_BIN  filestore binary to use (default: cargo build --release, target/release/filestore)
#   CORPUS_MB      approximate corpus size in MiB (default 1024)
#   SEED           corpus seed (default 1); same seed and generator -> same bytes
#   KEEP=1         keep the temporary directory (corpus, data, repository, logs)
#   TMPDIR         where the temporary directory is created (needs about 3x CORPUS_MB free)
set -euo pipefail

CORPUS_MB=${CORPUS_MB:-1024}
SEED=${SEED:-1}
KEEP=${KEEP:-0}

if ! [[ $CORPUS_MB =~ ^[0-9]+$ ]] || ((CORPUS_MB < 1)); then
    echo "CORPUS_MB must be a positive integer (MiB), got '$CORPUS_MB'" >&2
    exit 2
fi

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
SERVER_PID=

cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
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

# Shows a log's tail and fails.
die_with_log() {
    echo "$1" >&2
    [[ -f ${2:-} ]] && tail -n 40 "$2" >&2
    exit 1
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

# Same starting point for both tools: the whole corpus in the page cache.
find "$CORPUS" -type f -exec cat {} + >/dev/null

# --- filestore -----------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA=$TMP/data
URL=http://127.0.0.1:$PORT
"$BIN" dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

# The token file is written after the server is up, then the `export ...` line is printed.
for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || die_with_log "filestore dev exited early" "$TMP/server.log"
    if curl -sf "$URL/healthz" >/dev/null && [[ -s $DATA/dev-token ]] &&
        grep -q FILESTORE_TOKEN= "$TMP/server.log"; then
        break
    fi
    sleep 0.1
done
[[ -s $DATA/dev-token ]] || die_with_log "filestore dev did not come up on $URL" "$TMP/server.log"
TOKEN=$(<"$DATA/dev-token")

echo "filestore upload --wait..." >&2
fs_start=$(date +%s.%N)
FILESTORE_URL=$URL FILESTORE_TOKEN=$TOKEN "$BIN" upload "$CORPUS" --wait \
    >"$TMP/ids.txt" 2>"$TMP/upload.log" || die_with_log "filestore upload failed" "$TMP/upload.log"
fs_end=$(date +%s.%N)

fs_files=$(grep -c . "$TMP/ids.txt" || true)
if [[ $fs_files != "$corpus_files" ]]; then
    echo "filestore returned $fs_files ids for $corpus_files files" >&2
    exit 1
fi
fs_stored=$(du -sb "$DATA/objects" | cut -f1)

# --- restic --------------------------------------------------------------------------------
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$TMP/restic-cache
REPO=$TMP/restic-repo
restic init --repo "$REPO" >"$TMP/restic-init.log" 2>&1 ||
    die_with_log "restic init failed" "$TMP/restic-init.log"
restic_args=()
if restic backup --help 2>/dev/null | grep -q -- '--no-scan'; then
    restic_args+=(--no-scan)
fi

echo "restic backup..." >&2
rs_start=$(date +%s.%N)
restic backup --repo "$REPO" "${restic_args[@]}" "$CORPUS" >"$TMP/restic.log" 2>&1 ||
    die_with_log "restic backup failed" "$TMP/restic.log"
rs_end=$(date +%s.%N)
rs_stored=$(du -sb "$REPO" | cut -f1)

# --- report --------------------------------------------------------------------------------
echo
echo "filestore pipeline benchmark (seed $SEED, $(nproc) CPUs)"
echo "filestore: $("$BIN" --version) ($BIN)"
echo "restic:    $(restic version)${restic_args[*]:+ (backup ${restic_args[*]})}"
awk -v b="$corpus_bytes" -v f="$corpus_files" \
    -v fs0="$fs_start" -v fs1="$fs_end" -v fss="$fs_stored" \
    -v rs0="$rs_start" -v rs1="$rs_end" -v rss="$rs_stored" 'BEGIN {
    mib = b / 1048576
    ft = fs1 - fs0; rt = rs1 - rs0
    fr = mib / ft; rr = mib / rt
    printf "corpus: %.1f MiB, %d files\n", mib, f
    printf "filestore: %.1f s, %.1f MiB/s, stored %.1f MiB (%.1f%% of corpus)\n", ft, fr, fss / 1048576, 100 * fss / b
    printf "restic: %.1f s, %.1f MiB/s, stored %.1f MiB (%.1f%% of corpus)\n", rt, rr, rss / 1048576, 100 * rss / b
    printf "ratio (filestore/restic throughput): %.2f\n", fr / rr
}'
