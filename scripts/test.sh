#!/usr/bin/env bash
# Runs every test. Installs and starts what the tests need, so it works on a
# fresh machine: OpenClaw and a private Node 24 (npm registry), PostgreSQL
# (Debian package), KMS-compatible servers (Go module proxy).
# With CI=true, tests that need root, PostgreSQL, OpenClaw or a KMS server
# fail rather than skip when their dependency is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n== %s\n' "$*" >&2; }
t0=$SECONDS

# The KMS test servers take minutes to compile (Vault above all): start that
# first, in the background, while the network-bound installs run.
kmslog=$(mktemp)
scripts/kms-servers.sh install >"$kmslog" 2>&1 &
kmspid=$!

step "static checks"
make -s check

step "OpenClaw (pinned) + private Node"
export CLAWHOLD_OPENCLAW_DIR=${CLAWHOLD_OPENCLAW_DIR:-$root/.cache/openclaw}
scripts/install-openclaw.sh >&2

step "Chromium (Debian) for the browser tests"
scripts/chromium.sh >/dev/null

step "PostgreSQL"
pgline=$(scripts/postgres.sh start | grep '^CLAWHOLD_TEST_POSTGRES_DSN=' || true)
if [ -n "$pgline" ]; then
  export "$pgline"
  trap 'scripts/postgres.sh stop >&2 || true' EXIT
fi

step "KMS test servers (Vault, local-kms)"
if ! wait "$kmspid"; then
  cat "$kmslog" >&2
  echo "scripts/kms-servers.sh install failed" >&2
  exit 1
fi
tail -n 3 "$kmslog" >&2
eval "$(scripts/kms-servers.sh env)"

step "go test"
go test -count=1 -timeout 20m ./...

step "race detector on the concurrent packages"
go test -count=1 -race -short -timeout 15m ./keys ./secrets ./egress ./sandbox/cgroup ./sandbox/execlog ./frontdoor/session ./frontdoor/proxy ./cell/cellapi

step "fuzz smoke (seed corpus + 50,000 inputs each; a count, not a duration: duration runs can end in a spurious \"context deadline exceeded\" on a loaded machine)"
go test -run '^$' -fuzz FuzzParseHeader -fuzztime 50000x ./keys
go test -run '^$' -fuzz FuzzServeProvider -fuzztime 50000x ./secrets
go test -run '^$' -fuzz FuzzProxyRequest -fuzztime 50000x ./egress
go test -run '^$' -fuzz FuzzScrub -fuzztime 50000x ./egress
go test -run '^$' -fuzz FuzzTokenFromRequest -fuzztime 50000x ./frontdoor/session
go test -run '^$' -fuzz FuzzFlowCookie -fuzztime 20000x ./frontdoor/oidc
go test -run '^$' -fuzz FuzzParsePHC -fuzztime 50000x ./frontdoor/account

echo "all tests passed in $((SECONDS - t0)) s" >&2
