#!/usr/bin/env bash
# Issue 15, findings 1 and 2, against a given filestore binary: a server file under a local
# symlinked folder. Usage: scripts/demo-sync-confinement.sh path/to/filestore [port]
# (7fd2488 writes outside the folder and then trashes the server copy; later builds refuse it).
set -uo pipefail
BIN=$1; PORT=${2:-18080}
T=$(mktemp -d); mkdir -p "$T/dir" "$T/outside"
FILESTORE_METRICS_LISTEN=127.0.0.1:0 "$BIN" dev --data-dir "$T/data" --listen 127.0.0.1:$PORT >"$T/dev.log" 2>&1 &
DEV=$!
for _ in $(seq 100); do [ -s "$T/data/dev-token" ] && break; sleep 0.2; done
export FILESTORE_URL=http://127.0.0.1:$PORT FILESTORE_TOKEN=$(cat "$T/data/dev-token")
put() { # path content
  local size=${#2} sha; sha=$(printf '%s' "$2" | sha256sum | cut -d' ' -f1)
  local id; id=$(curl -s -H "Authorization: Bearer $FILESTORE_TOKEN" -H 'content-type: application/json' \
      -d "{\"path\":\"$1\",\"size\":$size}" $FILESTORE_URL/v1/file | python3 -c 'import sys,json; print(json.load(sys.stdin)["fileId"])')
  printf '%s' "$2" | curl -s -o /dev/null -H "Authorization: Bearer $FILESTORE_TOKEN" -T - $FILESTORE_URL/v1/files/$id/content
  curl -s -o /dev/null -H "Authorization: Bearer $FILESTORE_TOKEN" -H 'content-type: application/json' \
      -d "{\"checksum\":\"sha256-$sha\",\"size\":$size}" $FILESTORE_URL/v1/files/$id/finalize
}
put link/pwned.txt "written through a link"
put plain.txt "plain"
sleep 1
ln -s ../outside "$T/dir/link"
timeout 60 "$BIN" sync "$T/dir" >"$T/sync.json" 2>"$T/sync.err"; echo "sync exit: $?"
echo "outside the folder after sync: $(ls -A "$T/outside" | tr '\n' ' ')"
timeout 60 "$BIN" sync "$T/dir" >"$T/sync2.json" 2>>"$T/sync.err"
echo "server trash after a second sync: $(curl -s -H "Authorization: Bearer $FILESTORE_TOKEN" $FILESTORE_URL/v1/trash | python3 -c 'import sys,json; print([e["path"] for e in json.load(sys.stdin)["entries"]])')"
echo "report: $(python3 -c 'import sys,json; r=json.load(open(sys.argv[1])); print({k: r.get(k) for k in ("downloaded","deletedRemote","refused")})' "$T/sync.json")"
kill $DEV; wait $DEV 2>/dev/null; rm -rf "$T"
