#!/usr/bin/env bash
# Schema-driven fuzzing: schemathesis against a live tenantry on loopback,
# generated from its own /openapi.json.
#
#   tests/fuzz/run.sh            # CI budget: 15 examples per operation
#   tests/fuzz/run.sh 500        # a longer run (or FUZZ_EXAMPLES=500)
#
# It creates a virtualenv with a pinned schemathesis under target/fuzz,
# builds tenantry, starts `tenantry dev` (a private PostgreSQL with the demo
# tenants acme and globex) on free ports, signs in as each tenant, and runs:
#   1. the tenant API as acme, replaying every note acme creates as globex;
#   2. the same as globex, replaying on acme;
#   3. onboarding on the apex host;
#   4. the /admin API on the apex host with the admin token (last: it may
#      suspend and purge the demo tenants).
# All checks run (no 5xx, responses and status codes as documented, invalid
# input rejected, auth not ignored, ...), plus the cross-tenant replay check in
# tests/fuzz/hooks.py. Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
examples="${1:-${FUZZ_EXAMPLES:-15}}"
work="$root/target/fuzz"
schemathesis_version="4.32.5"
mkdir -p "$work"

if ! "$work/venv/bin/schemathesis" --version 2> /dev/null | grep -q "$schemathesis_version"; then
    echo "installing schemathesis $schemathesis_version into $work/venv"
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi

cargo build --locked --quiet
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
pg_port=$(free_port)
rm -rf "$work/devdb"
admin_token="fuzz-admin-token-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# Domain verification asks a loopback DNS server that answers NXDOMAIN, fast
# and offline.
coproc NXDOMAIN { exec python3 "$root/tests/fuzz/nxdomain.py"; }
read -r dns_port <&"${NXDOMAIN[0]}"
# Request rates out of the fuzzer's way, so that it reaches the handlers
# (429s are documented and checked all the same); plan quotas stay as shipped.
fuzz_limits='{"plans": {"free": {"requests_per_second": 100000, "burst": 100000}}}'
DEV_DATA_DIR="$work/devdb" DEV_PG_PORT="$pg_port" PORT="$port" LOG_FORMAT=json RUST_LOG=warn \
    ADMIN_TOKEN="$admin_token" DNS_RESOLVER="127.0.0.1:$dns_port" \
    TENANT_LIMITS="$fuzz_limits" CLIENT_RATE_LIMIT_PER_MINUTE=100000 CLIENT_RATE_LIMIT_BURST=100000 \
    "$root/target/debug/tenantry" dev > "$work/server.log" 2>&1 &
server=$!
# SIGTERM lets `dev` stop the PostgreSQL cluster it started.
trap 'kill -TERM "$server" 2> /dev/null; wait "$server" 2> /dev/null || true; kill "$NXDOMAIN_PID" 2> /dev/null || true' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    curl -fs "$base/readyz" > /dev/null 2>&1 && break
    kill -0 "$server" 2> /dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.5
done
for _ in $(seq 1 100); do grep -q -- "--- end ---" "$work/server.log" && break; sleep 0.2; done
grep -q -- "--- end ---" "$work/server.log" || { echo "tenantry dev did not finish starting"; cat "$work/server.log"; exit 1; }

login() {
    curl -fs "$base/api/login" -H "Host: $1" -H 'content-type: application/json' \
        -d "{\"username\":\"$2\",\"password\":\"$3\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
acme_token=$(login acme.localhost alice alice-demo-password)
globex_token=$(login globex.localhost bob bob-demo-password)

fuzz() {  # fuzz <name> <host> <token> [schemathesis options...]
    local name=$1 host=$2 token=$3
    shift 3
    echo "=== schemathesis: $name ($examples examples per operation)"
    (cd "$work" && SCHEMATHESIS_HOOKS="$root/tests/fuzz/hooks.py" "$work/venv/bin/schemathesis" \
        --config-file "$root/tests/fuzz/schemathesis.toml" run "$base/openapi.json" \
        -H "Host: $host" -H "Authorization: Bearer $token" \
        --checks all --max-examples "$examples" --seed 20261122 --workers 1 \
        --report junit --report-dir "$work/report-$name" --no-color "$@")
}

replays() { [ -f "$TENANT_REPLAY_LOG" ] && wc -l < "$TENANT_REPLAY_LOG" || echo 0; }
failed=()
export TENANT_A_HOST=acme.localhost TENANT_A_TOKEN=$acme_token TENANT_B_HOST=globex.localhost TENANT_B_TOKEN=$globex_token
export TENANT_REPLAY_LOG="$work/replays-acme.log"
rm -f "$TENANT_REPLAY_LOG"
fuzz acme acme.localhost "$acme_token" --exclude-path /v1/tenants --exclude-path-regex '^/v1/admin' || failed+=(acme)
echo "notes of acme replayed as globex: $(replays)"
[ "$(replays)" -gt 0 ] || failed+=("acme (no cross-tenant replay ran)")
export TENANT_A_HOST=globex.localhost TENANT_A_TOKEN=$globex_token TENANT_B_HOST=acme.localhost TENANT_B_TOKEN=$acme_token
export TENANT_REPLAY_LOG="$work/replays-globex.log"
rm -f "$TENANT_REPLAY_LOG"
fuzz globex globex.localhost "$globex_token" --exclude-path /v1/tenants --exclude-path-regex '^/v1/admin' || failed+=(globex)
echo "notes of globex replayed as acme: $(replays)"
[ "$(replays)" -gt 0 ] || failed+=("globex (no cross-tenant replay ran)")
# Onboarding alone has no links to follow, so no stateful phase here.
fuzz apex localhost "$acme_token" --include-path /v1/tenants --phases examples,coverage,fuzzing || failed+=(apex)
fuzz admin localhost "$admin_token" --include-path-regex '^/v1/admin' || failed+=(admin)
if ((${#failed[@]})); then
    printf 'schemathesis found failures in: %s (reports under %s)\n' "${failed[*]}" "$work"
    exit 1
fi
echo "schemathesis: no failures"
