#!/usr/bin/env bash
# `make demo`: the whole product on loopback, the three ways to run in one go.
#   1. builds the agent and the emulator (debug, scripts/build.sh: the build `make test` reuses),
#   2. starts the emulator with emulator/examples/seed.yaml on a free port and a temporary state dir,
#   3. mints a service-account token as the kubelet would (workload identity),
#   4. init: writes a SecretProviderClass for the demo vault and runs `keyvault-agent --once`,
#   5. prints what was written: tree, modes and non-secret facts (never a secret value),
#   6. sidecar: starts the demo application (demo/demo-app, lists sizes and hashes) and the agent
#      as a sidecar on the same directory that signals it (SIGHUP) after a change,
#   7. rotates a secret through the emulator's admin API, waits for the sidecar to publish it and
#      the application to re-list, and prints the sidecar's /status,
#   8. stops everything (SIGTERM: the sidecar exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh # wait_until

CARGO="${CARGO:-cargo}"
SEED="${SEED:-emulator/examples/seed.yaml}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building keyvault-agent and keyvault-emulator (debug; first time ~3 min on 2 idle cores, then seconds)"
bin="$(CARGO="$CARGO" bash scripts/build.sh debug)"
agent="$bin/keyvault-agent"
emulator="$bin/keyvault-emulator"

work="$(mktemp -d "${TMPDIR:-/tmp}/keyvault-demo.XXXXXX")"
emu_pid=""
app_pid=""
sidecar_pid=""
cleanup() {
    for p in $sidecar_pid $app_pid $emu_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

say "starting the emulator (seed: $SEED)"
mkfifo "$work/ready"
"$emulator" serve --addr 127.0.0.1:0 --state-dir "$work/state" --seed "$SEED" \
    > "$work/ready" 2> "$work/emulator.log" &
emu_pid=$!
# The first stdout line is the ready JSON; read it with a deadline instead of sleeping.
if ! read -r -t 60 ready < "$work/ready"; then
    echo "demo: the emulator did not print its ready line; its log:" >&2
    cat "$work/emulator.log" >&2
    exit 1
fi
json() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$ready" "$1"; }
vault_url="$(json vault_url)"
authority="$(json authority_host)"
ca_file="$(json ca_file)"
tenant="$(json tenant_id)"
echo "vault:     $vault_url"
echo "authority: $authority"
echo "CA:        $ca_file"

# The identity `app` of the example seed: federated with system:serviceaccount:default:app.
client_id="$(awk '/^[[:space:]]*- name: app[[:space:]]*$/ {f=1} f && /client_id:/ {gsub(/["'"'"']/, "", $2); print $2; exit}' "$SEED")"
[ -n "$client_id" ] || { echo "demo: no identity named app in $SEED" >&2; exit 1; }

say "minting a service-account token (sub system:serviceaccount:default:app)"
"$emulator" token --sub system:serviceaccount:default:app --aud api://AzureADTokenExchange \
    --ttl 1h --state-dir "$work/state" --out "$work/token"
echo "token file: $work/token ($(wc -c < "$work/token") bytes)"

cat > "$work/secretproviderclass.yaml" <<SPC
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: demo
spec:
  provider: azure
  parameters:
    keyvaultName: demo
    # Emulators and private endpoints: the vault's URL instead of <keyvaultName>.vault.azure.net.
    keyvaultURL: "$vault_url"
    clientID: "$client_id"
    tenantID: "$tenant"
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
        - |
          objectName: db-password
          objectType: secret
          objectAlias: db-password-history
          objectVersionHistory: 2
        - |
          objectName: web-tls
          objectType: secret
          objectAlias: tls/web.pem
        - |
          objectName: web-tls
          objectType: cert
          objectAlias: tls/web.crt
        - |
          objectName: rsa-key
          objectType: key
          filePermission: "0600"
        - |
          objectName: ec-key
          objectType: key
        # keyvault-agent extensions (the CSI provider ignores these keys):
        # one value out of a JSON secret,
        - |
          objectName: app-config
          objectType: secret
          objectAlias: db/password
          objectJsonPointer: /db/password
        # a certificate as tls.crt / tls.key / ca.crt (kubernetes.io/tls),
        - |
          objectName: api-tls
          objectType: cert
          objectAlias: api-tls
          objectLayout: tls
          filePermission: "0600"
        # and an object that may be missing: skipped with a warning, shown as absent.
        - |
          objectName: feature-flag
          objectType: secret
          objectOptional: "true"
SPC
say "the SecretProviderClass"
sed 's/^/  /' "$work/secretproviderclass.yaml"

say "keyvault-agent --once"
out="$work/secrets"
mkdir -p "$out"
SSL_CERT_FILE="$ca_file" \
AZURE_AUTHORITY_HOST="$authority" \
AZURE_FEDERATED_TOKEN_FILE="$work/token" \
    "$agent" --config "$work/secretproviderclass.yaml" --dir "$out" --once
echo "exit code: 0"
if [ ! -L "$out/..data" ]; then
    echo "demo: the agent exited 0 but published nothing under $out (no ..data)" >&2
    exit 1
fi

say "what the agent wrote under $out"
(cd "$out" && find . -mindepth 1 | sort | while read -r p; do
    if [ -L "$p" ]; then printf '  %s -> %s\n' "$p" "$(readlink "$p")"; else printf '  %s\n' "$p"; fi
done)

say "files and modes (through the visible symlinks, as the app sees them)"
# Every published file with its mode, owner and size, read through the visible symlinks.
(cd "$out" && find -L . -mindepth 1 -name '..*' -prune -o -type f -print | sed 's|^\./||' | sort |
    while read -r f; do printf '  %s %s\n' "$(stat -L -c '%A %U:%G %6s' "$f")" "$f"; done)

say "content, without secret values"
data="$(readlink -f "$out/..data")"
(cd "$data" && find . -type f ! -name '.*' | sed 's|^\./||' | sort) | while read -r f; do
    p="$data/$f"
    size="$(wc -c < "$p" | tr -d ' ')"
    kinds="$(grep -o -- '-----BEGIN [A-Z ]*-----' "$p" | sed 's/-----BEGIN \(.*\)-----/\1/' | paste -sd, - || true)"
    if [ -n "$kinds" ]; then
        echo "  $f: $size bytes, PEM blocks: $kinds"
        if grep -q -- '-----BEGIN CERTIFICATE-----' "$p"; then
            openssl x509 -in "$p" -noout -subject -issuer -enddate 2>/dev/null | sed 's/^/      /'
        fi
    else
        echo "  $f: $size bytes (a secret value: not shown)"
    fi
done
if [ -f "$out/..status.json" ]; then
    echo "  ..status.json (the set's manifest, for tools): $(wc -c < "$out/..status.json" | tr -d ' ') bytes of object ids, versions and keyed digests (HMAC-SHA256)"
    python3 -c 'import json,sys; print("".join("  absent (optional, not in the vault): %s -> %s\n" % (a["id"], a["path"]) for a in json.load(open(sys.argv[1])).get("absent", [])), end="")' "$out/..status.json"
fi

# ---- the sidecar: an application, the agent refreshing beside it, a rotation ----
http() { # GET URL: prints the body; fails unless 200
    python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

say "sidecar: the application, then keyvault-agent beside it (refresh every 2s, SIGHUP on change)"
# demo/demo-app stands in for the application: it lists the files (sizes and sha256, never the
# values) at start and again on each SIGHUP.
SECRETS_DIR="$out" MARKER_FILE="$work/app-reloads" sh demo/demo-app > "$work/app.log" 2>&1 &
app_pid=$!
echo "$app_pid" > "$work/app.pid"
wait_until 10 "the application's first listing" grep -q 'demo-app: start: end' "$work/app.log"
# The demo app prints each file's sha256 (the e2e tests compare them); the demo shows sizes only.
no_digest() { sed -e 's/ sha256=[0-9a-f]*//' -e 's/^/  /'; }
no_digest < "$work/app.log"
# A free loopback port for the health/status server (the agent binds it itself).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
SSL_CERT_FILE="$ca_file" \
AZURE_AUTHORITY_HOST="$authority" \
AZURE_FEDERATED_TOKEN_FILE="$work/token" \
    "$agent" --config "$work/secretproviderclass.yaml" --dir "$out" --interval 2s --jitter 0 \
    --listen "127.0.0.1:$port" --on-change-signal HUP --signal-pidfile "$work/app.pid" \
    > "$work/sidecar.log" 2>&1 &
sidecar_pid=$!
wait_until 60 "the sidecar's /readyz" http "http://127.0.0.1:$port/readyz" || { cat "$work/sidecar.log" >&2; exit 1; }
echo "sidecar ready: http://127.0.0.1:$port/readyz answers 200 ($("$agent" probe --listen "127.0.0.1:$port" && echo "keyvault-agent probe: exit 0"))"

say "rotation: a new version of db-password through the emulator's admin API"
admin_url="$(json admin_url)"
python3 - "$admin_url" "$ca_file" <<'PY'
import json, ssl, sys, urllib.request
url = sys.argv[1].rstrip("/") + "/vaults/demo/secrets/db-password"
req = urllib.request.Request(url, data=json.dumps({"value": "rotated-by-the-demo"}).encode(), method="PUT",
                             headers={"Content-Type": "application/json"})
body = json.loads(urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sys.argv[2]), timeout=10).read() or b"{}")
print(f"PUT {url}: new version {body.get('version', '?')}")
PY
wait_until 60 "the sidecar's swap and the application's reload" grep -q 'demo-app: reload 1: end' "$work/app.log" || {
    cat "$work/sidecar.log" >&2; exit 1; }
echo "the sidecar published a new set and sent SIGHUP; its log:"
grep -E 'published a new set|changed=true|on-change' "$work/sidecar.log" | tail -n 3 | sed 's/^/  /'
echo "the application re-listed on SIGHUP (db-password and its history changed size):"
sed -n '/demo-app: reload 1: files/,/demo-app: reload 1: end/p' "$work/app.log" | no_digest

say "the sidecar's /status (ids, versions, times; never values nor digests)"
http "http://127.0.0.1:$port/status" | python3 -m json.tool | sed 's/^/  /'

say "stopping: SIGTERM to the sidecar"
kill -TERM "$sidecar_pid"
code=0
wait "$sidecar_pid" || code=$?
sidecar_pid=""
echo "sidecar exit code: $code"
[ "$code" -eq 0 ] || { cat "$work/sidecar.log" >&2; exit 1; }

say "done: init, sidecar, rotation, notification and /status shown; the emulator is stopped and $work removed"
