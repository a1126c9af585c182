#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document with Schemathesis (every check): starts
# `filestore dev` on a free loopback port with a throwaway data directory, and fails on any
# server error (5xx) or any response the document does not describe.
#
#   scripts/schemathesis.sh            # the debug binary cargo builds (built when missing)
#   FILESTORE_BIN=target/release/filestore SCHEMATHESIS_MAX_TIME=600 scripts/schemathesis.sh
#
# Settings (environment): FILESTORE_BIN, SCHEMATHESIS_VENV (where Schemathesis is installed,
# target/schemathesis-venv), SCHEMATHESIS_MAX_TIME (seconds of fuzzing, 150),
# SCHEMATHESIS_MAX_EXAMPLES (cases per operation and phase, 40), SCHEMATHESIS_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: checks and their defaults change between releases.
version=4.32.5
venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
bin=${FILESTORE_BIN:-target/debug/filestore}
max_time=${SCHEMATHESIS_MAX_TIME:-150}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-40}

if [ ! -x "$venv/bin/schemathesis" ] || [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $version" ]; then
  echo "installing schemathesis $version into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3-venv >/dev/null 2>&1 || {
      apt-get update -qq && apt-get install -y -qq python3-venv
    }
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi
if [ ! -x "$bin" ]; then
  cargo build --workspace --bin filestore
fi

work=$(mktemp -d)
dev_pid=
cleanup() {
  if [ -n "$dev_pid" ]; then
    kill "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port, and `filestore dev` prints the one it got. A fuzzer
# registers files of every size up to the per-file limit, so the pending-upload budget (507
# once spent, by design) is lifted; nothing it registers is ever written.
"$bin" dev --data-dir "$work/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --max-pending-upload-bytes 18446744073709551615 >"$work/dev.log" 2>&1 &
dev_pid=$!
base=
for _ in $(seq 1 300); do
  base=$(sed -n 's/^filestore is serving \(http[^ ]*\) .*/\1/p' "$work/dev.log")
  [ -n "$base" ] && break
  if ! kill -0 "$dev_pid" 2>/dev/null; then
    cat "$work/dev.log" >&2
    echo "filestore dev exited before serving" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$base" ]; then
  cat "$work/dev.log" >&2
  echo "filestore dev did not start within 60 s" >&2
  exit 1
fi
token=$(cat "$work/data/dev-token")

# A few real files, so that the fuzzer also reaches what lies past "404": downloads (with
# ranges), moves, trash, versions. Their paths and ids are offered to it as dictionaries, drawn
# half of the time for the parameters that name a path or a file.
config="$work/schemathesis.toml"
cp scripts/schemathesis.toml "$config"
python3 - "$base" "$token" >>"$config" <<'PY'
import hashlib, json, sys, time, urllib.request

base, token = sys.argv[1], sys.argv[2]


def call(method, path, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp) if resp.status != 204 else None


files = {
    "seed/a.txt": b"hello, world\n" * 100,
    "seed/docs/b.md": b"# notes\n" * 3000,
    "seed/c.bin": bytes(range(256)) * 40,
    "seed/trashed.txt": b"gone\n",
}
ids = []
for path, content in files.items():
    reg = call("POST", "/v1/file", {"path": path, "size": len(content)})
    call("PUT", reg["location"], content, "application/octet-stream")
    checksum = "sha256-" + hashlib.sha256(content).hexdigest()
    call("POST", f"/v1/files/{reg['fileId']}/finalize", {"checksum": checksum, "size": len(content)})
    ids.append(reg["fileId"])
for file_id in ids:
    for _ in range(300):
        if call("GET", f"/v1/files/{file_id}/metadata")["status"] == "ready":
            break
        time.sleep(0.1)
call("POST", "/v1/tree/delete", {"path": "seed/trashed.txt"})

# Plain ASCII strings: their JSON spelling is their TOML spelling.
dictionaries = {
    "paths": [*files, "seed", "seed/docs"],
    "prefixes": ["seed/", "seed/docs/", "seed/a"],
    "ids": ids,
    "id_lists": [",".join(ids), ids[0], f"{ids[1]},{ids[1]}"],
}
print("\n[dictionaries]")
for name, values in dictionaries.items():
    print(f"{name} = {{ values = {json.dumps(values)} }}")
print("\n[parameters]")
for key, name in [
    ("query.path", "paths"), ("body.path", "paths"), ("body.from", "paths"), ("body.to", "paths"),
    ("query.prefix", "prefixes"), ("path.id", "ids"), ("query.id", "id_lists"),
]:
    print(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
PY
echo "fuzzing $base with schemathesis $version: every check, up to $max_examples cases per operation, ${max_time}s"

status=0
"$venv/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $token" \
  --max-examples "$max_examples" \
  --max-time "$max_time" \
  --request-timeout 30 \
  --workers 2 \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  --no-color \
  --report junit --report-dir "$work/report" || status=$?
# The server's own count of what it answered (seeding included), from its metrics listener.
metrics=$(sed -n 's/^metrics for Prometheus: \(http[^ ]*\)$/\1/p' "$work/dev.log")
if [ -n "$metrics" ]; then
  curl -fsS "$metrics" | python3 -c '
import re, sys
count = {}
for line in sys.stdin:
    m = re.match(r"filestore_http_requests_total\{.*status=\"(\d)\d\d\".*\} (\S+)$", line)
    if m:
        count[m[1]] = count.get(m[1], 0) + float(m[2])
total = int(sum(count.values()))
classes = ", ".join(f"{int(n)} {c}xx" for c, n in sorted(count.items()))
print(f"filestore dev answered {total} requests: {classes}")
sys.exit(1 if count.get("5") else 0)
' || status=1
fi
if ! kill -0 "$dev_pid" 2>/dev/null; then
  echo "filestore dev died during the run:" >&2
  tail -50 "$work/dev.log" >&2
  status=1
fi
if grep -q 'internal error' "$work/dev.log"; then
  echo "the server logged internal errors:" >&2
  grep 'internal error' "$work/dev.log" | head -20 >&2
  status=1
fi
exit "$status"
