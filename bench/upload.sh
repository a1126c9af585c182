#!/usr/bin/env bash
# Upload and download throughput through Filestore on the production backends, against the
# same S3 server used directly, in one run on one machine:
#   upload:   `filestore upload` (register, stream through the API into a multipart upload,
#             finalize)  vs  curl PUT of the same file to a presigned URL
#   download: `filestore download` (descriptor, chunks fetched in parallel from presigned S3
#             URLs, decrypted, verified)  vs  curl GET of the raw object
# Prints MiB/s for each and the ratios (Filestore / raw). Targets: >= 0.8 up, >= 0.9 down.
# The machine is shared and its page cache writes back in bursts, so each measurement is
# taken ROUNDS times, Filestore and raw alternating (which goes first alternates too), after a
# `sync`; the ratios are of the medians, and every round's own ratio is printed as well.
#
#   bench/upload.sh [SIZE_MIB]     (default 1024; ROUNDS=3)
# FILESTORE_BIN overrides the binary (default: target/release/filestore, built if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SIZE_MIB="${1:-1024}"
ROUNDS="${ROUNDS:-3}"
BIN="${FILESTORE_BIN:-$ROOT/target/release/filestore}"
[ -x "$BIN" ] || cargo build --release -p filestore-cli --locked

WORK=$(mktemp -d)
# Its own temp directory: PostgreSQL runs as the postgres user, which cannot enter $WORK.
SERVICES=$(mktemp -d)
cleanup() {
  [ -n "${API_PID:-}" ] && kill "$API_PID" 2>/dev/null || true
  [ -n "${WORKER_PID:-}" ] && kill "$WORKER_PID" 2>/dev/null || true
  scripts/services.sh stop "$SERVICES" >/dev/null 2>&1 || true
  rm -rf "$WORK" "$SERVICES"
}
trap cleanup EXIT

scripts/services.sh start "$SERVICES" --only postgres,rabbitmq,s3 >/dev/null
# shellcheck disable=SC1091
. "$SERVICES/env"

hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
JWT=$(hex)
export FILESTORE_DATABASE_URL="$FILESTORE_TEST_PG_URL" FILESTORE_AMQP_URL="$FILESTORE_TEST_AMQP_URL" \
  FILESTORE_S3_ENDPOINT="$FILESTORE_TEST_S3_ENDPOINT" FILESTORE_S3_ACCESS_KEY="$FILESTORE_TEST_S3_ACCESS_KEY" \
  FILESTORE_S3_SECRET_KEY="$FILESTORE_TEST_S3_SECRET_KEY" FILESTORE_S3_CREATE_BUCKETS=true \
  FILESTORE_MASTER_KEY="$(hex)" FILESTORE_URL_SIGNING_KEY="$(hex)" FILESTORE_JWT_SECRET="$JWT" \
  FILESTORE_LISTEN="127.0.0.1:$PORT" FILESTORE_METRICS_LISTEN="127.0.0.1:$(free_port)" FILESTORE_LOG=warn
"$BIN" api >"$WORK/api.log" 2>&1 &
API_PID=$!
export FILESTORE_URL="http://127.0.0.1:$PORT"
for _ in $(seq 300); do curl -sf "$FILESTORE_URL/readyz" >/dev/null && break; sleep 0.1; done

# Tokens minted with the API's secret: one user per round, because chunks are deduplicated per
# user and every round should store (and fetch) its own.
mkdir -p "$WORK/data/secrets"
printf '%s' "$JWT" >"$WORK/data/secrets/jwt-secret"
token_of_round() { "$BIN" token --data-dir "$WORK/data" --user "bench$1"; }

echo "== generating a ${SIZE_MIB} MiB file of random bytes"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/file.bin"
sync

# A presigned URL for the raw S3 baseline (SigV4 query signing, standard library only).
presign() {
  python3 - "$1" "$2" <<'EOF'
import datetime, hashlib, hmac, os, sys, urllib.parse
method, path = sys.argv[1], sys.argv[2]
endpoint = os.environ["FILESTORE_TEST_S3_ENDPOINT"]
host = urllib.parse.urlparse(endpoint).netloc
key, secret, region = os.environ["FILESTORE_TEST_S3_ACCESS_KEY"], os.environ["FILESTORE_TEST_S3_SECRET_KEY"], "us-east-1"
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
scope = f"{day}/{region}/s3/aws4_request"
q = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{key}/{scope}", "X-Amz-Date": amz_date,
     "X-Amz-Expires": "3600", "X-Amz-SignedHeaders": "host"}
canonical_q = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in sorted(q.items()))
canonical = "\n".join([method, urllib.parse.quote(path), canonical_q, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
print(f"{endpoint}{urllib.parse.quote(path)}?{canonical_q}&X-Amz-Signature={sig}")
EOF
}


secs() { python3 -c "import time; print(time.monotonic())"; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
rate() { python3 -c "print(f'{$SIZE_MIB / $1:.1f}')"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
# Runs "$1" and "$2" (shell functions) one after the other, in the order round $3 calls for.
alternate() { if [ $(($3 % 2)) = 1 ]; then "$1"; "$2"; else "$2"; "$1"; fi; }

raw_put() {
  sync; local t0; t0=$(secs)
  curl -sf -T "$WORK/file.bin" "$(presign PUT "/filestore-raw/bench-baseline-$ROUND")" >/dev/null
  RAW_UP+=("$(elapsed "$t0" "$(secs)")")
}
api_put() {
  local t0 id token; token=$(token_of_round "$ROUND")
  sync; t0=$(secs)
  id=$(FILESTORE_TOKEN=$token "$BIN" upload "$WORK/file.bin")
  API_UP+=("$(elapsed "$t0" "$(secs)")")
  IDS+=("$id")
}
raw_get() {
  sync; local t0 t1; t0=$(secs)
  curl -sf -o "$WORK/raw.out" "$(presign GET "/filestore-raw/bench-baseline-$ROUND")"
  t1=$(secs)
  # `filestore download` fsyncs before it renames the file into place; this is what that costs.
  python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$WORK/raw.out"
  RAW_DOWN+=("$(elapsed "$t0" "$t1")"); RAW_DOWN_SYNC+=("$(elapsed "$t0" "$(secs)")")
  cmp -s "$WORK/file.bin" "$WORK/raw.out" || { echo "raw GET returned other bytes" >&2; exit 1; }
  rm -f "$WORK/raw.out"
  curl -sf -X DELETE "$(presign DELETE "/filestore-raw/bench-baseline-$ROUND")" >/dev/null
}
api_get() {
  local t0 token; token=$(token_of_round "$ROUND")
  sync; t0=$(secs)
  FILESTORE_TOKEN=$token "$BIN" download "${IDS[$((ROUND - 1))]}" -o "$WORK/api.out"
  API_DOWN+=("$(elapsed "$t0" "$(secs)")")
  cmp -s "$WORK/file.bin" "$WORK/api.out" || { echo "filestore download returned other bytes" >&2; exit 1; }
  rm -f "$WORK/api.out"
}

RAW_UP=(); API_UP=(); RAW_DOWN=(); RAW_DOWN_SYNC=(); API_DOWN=(); IDS=()
echo "== upload, $ROUNDS rounds: curl PUT to a presigned URL vs filestore upload through the API"
for ROUND in $(seq "$ROUNDS"); do alternate raw_put api_put "$ROUND"; done

echo "== pipeline: the worker starts now and takes every upload to ready"
"$BIN" worker >"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
t0=$(secs)
for i in "${!IDS[@]}"; do
  id=${IDS[$i]}
  for _ in $(seq 6000); do
    status=$(FILESTORE_TOKEN=$(token_of_round "$((i + 1))") "$BIN" info "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = ready ] && break
    case "$status" in failed|quarantined) echo "file ended $status" >&2; exit 1 ;; esac
    sleep 0.2
  done
done
PROCESS=$(elapsed "$t0" "$(secs)")
# Nothing else runs while downloads are measured.
kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=

echo "== download, $ROUNDS rounds: curl GET vs filestore download (parallel chunk fetch)"
for ROUND in $(seq "$ROUNDS"); do alternate raw_get api_get "$ROUND"; done

echo
printf '%-36s %s\n' "round" "$(seq -s ' ' "$ROUNDS" | sed 's/[0-9]*/      &/g')"
printf '%-36s' "upload ratio (API/raw)"
for i in $(seq 0 $((ROUNDS - 1))); do printf ' %6s' "$(ratio "${RAW_UP[$i]}" "${API_UP[$i]}")"; done; echo
printf '%-36s' "download ratio (API/raw)"
for i in $(seq 0 $((ROUNDS - 1))); do printf ' %6s' "$(ratio "${RAW_DOWN[$i]}" "${API_DOWN[$i]}")"; done; echo
echo
M_RAW_UP=$(median "${RAW_UP[@]}"); M_API_UP=$(median "${API_UP[@]}")
M_RAW_DOWN=$(median "${RAW_DOWN[@]}"); M_RAW_DOWN_SYNC=$(median "${RAW_DOWN_SYNC[@]}"); M_API_DOWN=$(median "${API_DOWN[@]}")
printf '%-36s %9s %9s\n' "${SIZE_MIB} MiB, $(nproc) cores, median of $ROUNDS" seconds MiB/s
printf '%-36s %9s %9s\n' "raw S3 PUT (curl)" "$M_RAW_UP" "$(rate "$M_RAW_UP")"
printf '%-36s %9s %9s\n' "filestore upload (API)" "$M_API_UP" "$(rate "$M_API_UP")"
printf '%-36s %9s %9s\n' "pipeline to ready ($ROUNDS users)" "$PROCESS" "$(python3 -c "print(f'{$SIZE_MIB * $ROUNDS / $PROCESS:.1f}')")"
printf '%-36s %9s %9s\n' "raw S3 GET (curl)" "$M_RAW_DOWN" "$(rate "$M_RAW_DOWN")"
printf '%-36s %9s %9s\n' "raw S3 GET + fsync" "$M_RAW_DOWN_SYNC" "$(rate "$M_RAW_DOWN_SYNC")"
printf '%-36s %9s %9s\n' "filestore download (chunks)" "$M_API_DOWN" "$(rate "$M_API_DOWN")"
echo "upload ratio   (API/raw): $(ratio "$M_RAW_UP" "$M_API_UP")   target >= 0.8"
echo "download ratio (API/raw): $(ratio "$M_RAW_DOWN" "$M_API_DOWN")   target >= 0.9"
echo "download ratio (API/raw GET + fsync, both durable): $(ratio "$M_RAW_DOWN_SYNC" "$M_API_DOWN")"
