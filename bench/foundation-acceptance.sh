#!/usr/bin/env bash
# The foundation's acceptance checks at full size, on the release binary, in one run:
#   1. a 1 GiB file and a folder of 1,000 small files: upload, download, cmp; curl of
#      /content and of Range slices
#   2. peak RSS of `filestore dev` while a 4 GiB file is uploaded and processed
#   3. kill -9 while a large file is being chunked; restart; ready with no new upload; cmp
#   4. dedupe: a 200 MiB file twice, then with 10 bytes inserted in the middle
# Prints what it measured. Needs ~4x BIG_GB + 2 GiB of free disk in TMPDIR.
#
# Environment: FILESTORE_BIN (default: cargo build --release), RSS_GB (default 4),
# BIG_MB (default 1024), KEEP=1 to keep the work directory.
set -euo pipefail

RSS_GB=${RSS_GB:-4}
BIG_MB=${BIG_MB:-1024}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${FILESTORE_BIN:-} ]]; then
    BIN=$FILESTORE_BIN
else
    (cd "$repo_root" && cargo build --release -p filestore-cli >&2)
    BIN=$repo_root/target/release/filestore
fi
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null

WORK=$(mktemp -d "${TMPDIR:-/tmp}/filestore-accept.XXXXXX")
DEV_PID=""
cleanup() {
    if [[ -n $DEV_PID ]]; then kill -9 "$DEV_PID" 2>/dev/null || true; fi
    pkill -9 -f "filestore dev --data-dir $WORK" 2>/dev/null || true
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FILESTORE_URL=http://127.0.0.1:$PORT

# random bytes, fast and deterministic: AES-CTR keystream
noise() { # size_mb seed file
    head -c "$(($1 * 1024 * 1024))" /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$2")" -iv "$(printf '%032x' 0)" >"$3"
}
now() { date +%s.%N; }
mibps() { python3 -c "import sys; b,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{b/1048576/t:.1f} MiB/s ({t:.2f} s)')" "$1" "$2"; }

start_dev() { # data-dir [timed-name]
    rm -f "$1/dev-token"
    if [[ -n ${2:-} ]]; then
        /usr/bin/time -v -o "$WORK/$2.time" "$BIN" dev --data-dir "$1" --listen "127.0.0.1:$PORT" >"$WORK/$2.log" 2>&1 &
    else
        "$BIN" dev --data-dir "$1" --listen "127.0.0.1:$PORT" >>"$WORK/dev.log" 2>&1 &
    fi
    DEV_PID=$!
    for _ in $(seq 300); do
        [[ -s $1/dev-token ]] && curl -sf "$FILESTORE_URL/healthz" >/dev/null && break
        sleep 0.1
    done
    FILESTORE_TOKEN=$(cat "$1/dev-token")
    export FILESTORE_TOKEN
}
stop_dev() { # SIGINT to the server itself (under /usr/bin/time it is the child)
    local pid
    pid=$(pgrep -P "$DEV_PID" -f 'filestore dev' || echo "$DEV_PID")
    kill -INT "$pid"
    wait "$DEV_PID" || true
    DEV_PID=""
}
status_of() { "$BIN" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
count_chunks() { find "$1/objects/chunks" -type f 2>/dev/null | wc -l; }

echo "== 1. round trips (${BIG_MB} MiB file, 1,000-file folder)"
start_dev "$WORK/d1"
noise "$BIG_MB" 1 "$WORK/big.bin"
size=$(stat -c %s "$WORK/big.bin")
t0=$(now); id=$("$BIN" upload "$WORK/big.bin" --wait); t1=$(now)
echo "upload+process: $(mibps "$size" "$(echo "$t1 - $t0" | bc)")"
t0=$(now); "$BIN" download "$id" -o "$WORK/big.out"; t1=$(now)
echo "parallel download: $(mibps "$size" "$(echo "$t1 - $t0" | bc)")"
cmp "$WORK/big.bin" "$WORK/big.out" && echo "cmp: download identical"
curl -sf -H "Authorization: Bearer $FILESTORE_TOKEN" "$FILESTORE_URL/v1/files/$id/content" | cmp - "$WORK/big.bin" &&
    echo "cmp: curl /content identical"
for r in "0-0" "1000000-3999999" "$((size - 100))-$((size - 1))"; do
    a=${r%-*} b=${r#*-}
    curl -sf -H "Authorization: Bearer $FILESTORE_TOKEN" -H "Range: bytes=$r" "$FILESTORE_URL/v1/files/$id/content" |
        cmp - <(tail -c +$((a + 1)) "$WORK/big.bin" | head -c $((b - a + 1))) && echo "cmp: Range bytes=$r exact"
done
mkdir -p "$WORK/small"
python3 - "$WORK/small" <<'PY'
import os, random, sys
rng = random.Random(7)
for i in range(1000):
    with open(os.path.join(sys.argv[1], f"f{i:04}.bin"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 10240)))
PY
t0=$(now); "$BIN" upload "$WORK/small" --wait >"$WORK/small.ids"; t1=$(now)
echo "1,000 small files uploaded+processed: $(wc -l <"$WORK/small.ids") ids, $(python3 -c "print(f'{1000/($t1-$t0):.0f} files/s')")"
mkdir -p "$WORK/small.out"
mapfile -t ids <"$WORK/small.ids"
"$BIN" download "${ids[@]}" -o "$WORK/small.out"
diff -r "$WORK/small" "$WORK/small.out" && echo "diff -r: all 1,000 files identical"
stop_dev

echo "== 2. peak RSS with a ${RSS_GB} GiB file"
noise $((RSS_GB * 1024)) 2 "$WORK/huge.bin"
rm -f "$WORK/big.out"
start_dev "$WORK/d2" rss
t0=$(now); id=$("$BIN" upload "$WORK/huge.bin" --wait); t1=$(now)
echo "upload+process: $(mibps "$(stat -c %s "$WORK/huge.bin")" "$(echo "$t1 - $t0" | bc)")"
stop_dev
grep -E 'Maximum resident set size' "$WORK/rss.time" | sed 's/^\s*/filestore dev /'
rm -rf "$WORK/d2" "$WORK/huge.bin"

echo "== 3. kill -9 while chunking"
start_dev "$WORK/d3"
id=$("$BIN" upload "$WORK/big.bin")
until (($(count_chunks "$WORK/d3") >= 40)); do sleep 0.05; done
echo "status before kill: $(status_of "$id"), chunks stored: $(count_chunks "$WORK/d3")"
kill -9 "$DEV_PID"; wait "$DEV_PID" 2>/dev/null || true; DEV_PID=""
start_dev "$WORK/d3"
until [[ $(status_of "$id") != processing ]]; do sleep 0.2; done
echo "status after restart: $(status_of "$id"), chunks stored: $(count_chunks "$WORK/d3")"
"$BIN" download "$id" -o "$WORK/big.out" && cmp "$WORK/big.bin" "$WORK/big.out" && echo "cmp: identical after kill -9"
stop_dev

echo "== 4. dedupe (200 MiB)"
start_dev "$WORK/d4"
python3 - "$WORK" <<'PY'
import random, sys
rng = random.Random(3)
data = rng.randbytes(200 * 1024 * 1024)
open(sys.argv[1] + "/d200.bin", "wb").write(data)
mid = len(data) // 2
open(sys.argv[1] + "/d200-edited.bin", "wb").write(data[:mid] + b"0123456789" + data[mid:])
PY
usage() {
    "$BIN" usage | python3 -c 'import json,sys; u=json.load(sys.stdin); print("chunks=%d stored_bytes=%d logical_bytes=%d" % (u["chunks"], u["chunkStoredBytes"], u["logicalBytes"]))'
}
"$BIN" upload "$WORK/d200.bin" --wait >/dev/null; echo "after first upload:  $(usage)"
"$BIN" upload "$WORK/d200.bin" --wait >/dev/null; echo "after same again:    $(usage)"
"$BIN" upload "$WORK/d200-edited.bin" --wait >/dev/null; echo "after 10-byte insert: $(usage)"
stop_dev
