#!/usr/bin/env bash
# Incremental sync benchmark: filestore sync vs rsync (delta algorithm) vs restic, side by side
# in one run, on the pipeline bench's corpus.
#
#   1. version 1: the corpus (bench/corpus.py). Each tool takes it in full: `filestore sync`
#      into a local `filestore dev`, `rsync -a` into a directory, `restic backup` into a
#      repository.
#   2. version 2: 1% of the files edited in the middle (a few KiB inserted), 1% new files.
#   3. each tool takes version 2; reported: bytes sent (filestore: chunk and file bytes it
#      uploaded; rsync: "Total bytes sent" with --no-whole-file, its delta algorithm; restic:
#      "Added to the repository"), time, and the ratios filestore/rsync and filestore/restic.
#
# Environment: CORPUS_MB (default 1024), SEED (1), FILESTORE_BIN (default: a release build),
# KEEP=1 keeps the work directory. Needs about 5x CORPUS_MB free in TMPDIR.
set -euo pipefail

CORPUS_MB=${CORPUS_MB:-1024}
SEED=${SEED:-1}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

if [[ -n ${FILESTORE_BIN:-} ]]; then
    BIN=$FILESTORE_BIN
else
    echo "building filestore (release)..." >&2
    (cd "$repo_root" && cargo build --release -p filestore-cli >&2)
    BIN=$repo_root/target/release/filestore
fi
for tool in rsync restic; do
    command -v "$tool" >/dev/null || {
        echo "installing $tool..." >&2
        apt-get install -y -qq "$tool" >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
    }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/filestore-sync-bench.XXXXXX")
DEV_PID=
cleanup() {
    [[ -n $DEV_PID ]] && kill "$DEV_PID" 2>/dev/null && wait "$DEV_PID" 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

echo "generating ~${CORPUS_MB} MiB corpus (seed $SEED)..." >&2
python3 "$script_dir/corpus.py" "$WORK/v1" "$CORPUS_MB" "$SEED"
cp -a "$WORK/v1" "$WORK/folder"

# --- filestore: version 1 ----------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FILESTORE_URL=http://127.0.0.1:$PORT
"$BIN" dev --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
for _ in $(seq 300); do
    [[ -s $WORK/data/dev-token ]] && curl -sf "$FILESTORE_URL/healthz" >/dev/null && break
    sleep 0.1
done
FILESTORE_TOKEN=$(cat "$WORK/data/dev-token")
export FILESTORE_TOKEN

sync_json() { # dir -> the JSON report of one `filestore sync`
    "$BIN" sync "$1" --device bench 2>>"$WORK/sync.log" | tail -n 1
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# Waits until the server has processed every file (the next version dedupes against it).
wait_ready() {
    python3 - "$FILESTORE_URL" "$FILESTORE_TOKEN" <<'PY'
import json, sys, time, urllib.request
base, token = sys.argv[1], sys.argv[2]
while True:
    busy, after = 0, ""
    while True:
        req = urllib.request.Request(f"{base}/v1/tree?limit=10000&after={after}",
                                     headers={"Authorization": f"Bearer {token}"})
        page = json.load(urllib.request.urlopen(req))
        busy += sum(e["status"] in ("uploading", "processing") for e in page["entries"])
        after = page.get("nextAfter")
        if not after:
            break
    if busy == 0:
        break
    time.sleep(0.5)
PY
}

t0=$(now)
v1=$(sync_json "$WORK/folder")
t1=$(now)
wait_ready
t2=$(now)
echo "filestore v1: $(field "$v1" uploaded) files, $(field "$v1" bytesSent) bytes sent, sync $(secs "$t0" "$t1") s, processed after $(secs "$t0" "$t2") s" >&2

# --- rsync and restic: version 1 ---------------------------------------------------------
mkdir -p "$WORK/rsync-dest"
rsync -a "$WORK/v1/" "$WORK/rsync-dest/"
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
restic init --repo "$WORK/restic" >/dev/null
restic backup --repo "$WORK/restic" --host bench "$WORK/v1" >"$WORK/restic-v1.log" 2>&1

# --- version 2 ---------------------------------------------------------------------------
python3 - "$WORK/v1" "$SEED" <<'PY'
import os, random, sys
root, seed = sys.argv[1], sys.argv[2]
rng = random.Random(f"filestore-sync-bench:{seed}")
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
edited = rng.sample(files, max(1, len(files) // 100))
for path in edited:
    with open(path, "rb") as f:
        data = f.read()
    middle = len(data) // 2
    with open(path, "wb") as f:
        f.write(data[:middle] + rng.randbytes(rng.randint(100, 4096)) + data[middle:])
for i in range(max(1, len(files) // 100)):
    path = os.path.join(root, "new", f"n{i:04d}.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 64 * 1024)))
print(f"version 2: {len(edited)} of {len(files)} files edited in the middle, "
      f"{max(1, len(files) // 100)} new", file=sys.stderr)
PY
# The synced folder becomes version 2 too (its client state left alone).
rsync -a --delete --exclude=/.filestore "$WORK/v1/" "$WORK/folder/"

t0=$(now)
v2=$(sync_json "$WORK/folder")
t1=$(now)
fs_bytes=$(field "$v2" bytesSent)
fs_secs=$(secs "$t0" "$t1")

t0=$(now)
rsync_out=$(rsync -a --no-whole-file --stats "$WORK/v1/" "$WORK/rsync-dest/")
t1=$(now)
rsync_bytes=$(echo "$rsync_out" | awk -F': ' '/^Total bytes sent/ {gsub(/,/, "", $2); print $2}')
rsync_secs=$(secs "$t0" "$t1")

t0=$(now)
restic backup --repo "$WORK/restic" --host bench "$WORK/v1" >"$WORK/restic-v2.log" 2>&1
t1=$(now)
restic_secs=$(secs "$t0" "$t1")
# "Added to the repository: 1.234 MiB (1.000 MiB stored)": the stored (compressed) figure.
restic_bytes=$(python3 - "$WORK/restic-v2.log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"Added to the (?:repository|repo): ([\d.]+) (\w+)(?: \(([\d.]+) (\w+) stored\))?", text)
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
if m.group(3):
    print(int(float(m.group(3)) * units[m.group(4)]))
else:
    print(int(float(m.group(1)) * units[m.group(2)]))
PY
)

python3 - "$fs_bytes" "$fs_secs" "$rsync_bytes" "$rsync_secs" "$restic_bytes" "$restic_secs" <<'PY'
import sys
fb, fs, rb, rs, tb, ts = (float(x) for x in sys.argv[1:])
mib = lambda b: f"{b / 1048576:.2f} MiB"
print(f"{'':10} {'bytes sent':>14} {'time':>9}")
print(f"{'filestore':10} {mib(fb):>14} {fs:>8.2f}s")
print(f"{'rsync':10} {mib(rb):>14} {rs:>8.2f}s")
print(f"{'restic':10} {mib(tb):>14} {ts:>8.2f}s   (added to the repository, compressed)")
print(f"ratio filestore/restic bytes: {fb / tb:.2f} (target < 1)")
print(f"ratio filestore/rsync  bytes: {fb / rb:.2f}")
print(f"ratio filestore/rsync  time:  {fs / rs:.2f}")
PY
