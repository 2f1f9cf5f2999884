#!/usr/bin/env bash
# kms-servers.sh builds the real key management servers that package kms's
# tests run against, from the Go module proxy, into .cache/bin:
#
#   vault      HashiCorp Vault (dev mode, transit engine)
#   local-kms  github.com/nsmithuk/local-kms, an AWS KMS API implementation
#
# There is no Cloud KMS emulator; the gcp-kms tests use a recorded-response
# stand-in and need nothing from here.
#
# Usage:
#   scripts/kms-servers.sh install   build what is missing or outdated (idempotent)
#   scripts/kms-servers.sh env       print the variables the tests read
#
# The tests also look in .cache/bin on their own. Under CI=true they fail
# when a server is missing, so CI must run `install` before `go test ./kms/...`.
set -euo pipefail

VAULT_VERSION=v1.21.4
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/.cache/bin
src=$root/.cache/src

log() { printf 'kms-servers: %s\n' "$*" >&2; }

# current NAME VERSION: is bin/NAME already built from VERSION?
current() {
	[[ -x $bin/$1 && -f $bin/.$1.version && $(<"$bin/.$1.version") == "$2" ]]
}

stamp() { printf '%s\n' "$2" >"$bin/.$1.version"; }

install_local_kms() {
	if current local-kms "$LOCAL_KMS_VERSION"; then
		log "local-kms $LOCAL_KMS_VERSION already installed"
		return
	fi
	log "building local-kms $LOCAL_KMS_VERSION"
	local start=$SECONDS
	# Outside any module, so clawhold's go.mod is not touched.
	(cd "$(mktemp -d)" && GOBIN=$bin GOFLAGS=-buildvcs=false go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION")
	stamp local-kms "$LOCAL_KMS_VERSION"
	log "local-kms built in $((SECONDS - start))s"
}

# Vault cannot be built with `go install module@version`: its go.mod has
# replace directives pointing at ./api and ./sdk, which are separate modules
# and so absent from the module zip. The build copies the module, drops those
# replaces so the published api and sdk modules are used, and adapts three
# call sites to the published sdk v0.21.0: the 1.21 release branch carries an
# sdk of its own that matches no published tag (ActivationFunc takes one
# argument fewer there; LockManager.RestorePolicy returns the key name too).
install_vault() {
	if current vault "$VAULT_VERSION"; then
		log "vault $VAULT_VERSION already installed"
		return
	fi
	log "building vault $VAULT_VERSION (several minutes on 2 cores)"
	local start=$SECONDS
	local moddir
	moddir=$(cd "$(mktemp -d)" && go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $moddir ]] || { log "go mod download gave no directory for vault"; exit 1; }

	local dir=$src/vault-$VAULT_VERSION
	rm -rf "$dir"
	cp -R "$moddir" "$dir"
	chmod -R u+w "$dir"
	(
		cd "$dir"
		go mod edit \
			-dropreplace=github.com/hashicorp/vault/api \
			-dropreplace=github.com/hashicorp/vault/api/auth/approle \
			-dropreplace=github.com/hashicorp/vault/api/auth/kubernetes \
			-dropreplace=github.com/hashicorp/vault/api/auth/userpass \
			-dropreplace=github.com/hashicorp/vault/sdk
		sed -i 's/^func (i \*IdentityStore) activateDeduplication(ctx context.Context, req \*logical.Request) error {$/func (i *IdentityStore) activateDeduplication(ctx context.Context, req *logical.Request, _ string) error {/' vault/identity_store_util.go
		sed -i 's/b\.idStoreBackend\.ActivationFunc(ctx, nil)/b.idStoreBackend.ActivationFunc(ctx, nil, "")/' vault/logical_system_activation_flags.go
		sed -i 's/^\trestoredKeyName, err := b\.lm\.RestorePolicy(ctx, req\.Storage, keyName, backupB64, force)$/\terr := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)\n\trestoredKeyName := keyName/' builtin/logical/transit/path_restore.go
		grep -q 'req \*logical.Request, _ string) error {' vault/identity_store_util.go &&
			grep -q 'ActivationFunc(ctx, nil, "")' vault/logical_system_activation_flags.go &&
			grep -q '^.restoredKeyName := keyName$' builtin/logical/transit/path_restore.go ||
			{ log "vault source changed: the sdk compatibility patch no longer applies"; exit 1; }
		GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$bin/vault.tmp" .
	)
	mv "$bin/vault.tmp" "$bin/vault"
	rm -rf "$dir"
	stamp vault "$VAULT_VERSION"
	log "vault built in $((SECONDS - start))s"
}

case ${1:-} in
install)
	command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
	mkdir -p "$bin" "$src"
	# Build output only (vault alone is ~350 MB): keep it out of git.
	printf '*\n' >"$bin/.gitignore"
	printf '*\n' >"$src/.gitignore"
	install_local_kms
	install_vault
	;;
env)
	printf 'export CLAWHOLD_TEST_VAULT_BIN=%q\n' "$bin/vault"
	printf 'export CLAWHOLD_TEST_LOCAL_KMS_BIN=%q\n' "$bin/local-kms"
	;;
*)
	echo "usage: $0 install | env" >&2
	exit 2
	;;
esac
