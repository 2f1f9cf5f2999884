package cell

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"

	"github.com/clawhold/clawhold/sandbox"
)

// Layout is where one tenant's cell lives on the host, under
// <data dir>/cells/<tenant> (0700, root):
//
//	home/          OpenClaw's HOME and state dir       rw in the cell, owned by the cell's uid
//	               (with encrypted state: the mount point of the plaintext
//	               view, which only the cell's mount namespace keeps)
//	home.enc/      the encrypted state on disk (cellfs) owned by the cell's uid
//	workspace/     the agent's workspace               rw in the cell, owned by the cell's uid
//	cache/         Node's compile cache                rw in the cell, owned by the cell's uid
//	               (V8 code compiled from OpenClaw's public code only, so it
//	               stays off the encrypted volume: a cold start writes ~6,000
//	               files there; per cell, as a shared cache would let one
//	               cell plant code that another runs)
//	config/        openclaw.json (generated, 0600)     read-only in the cell
//	bin/           secrets-provider (0500)             read-only in the cell
//	run/           cell.sock, egress.sock              read-only in the cell (sockets still connect)
//	plugin/        the tool-call plugin                read-only in the cell
//	gateway.sock   the gateway, for the front door     not in the cell
//
// The cell cannot write its own config, provider or plugin: a compromised
// agent must not be able to drop the tool-call plugin or widen its auth.
type Layout struct {
	Dir, Home, CipherHome, Workspace, CacheDir, ConfigDir, BinDir, RunDir, PluginDir string
}

// NewLayout returns tenant's layout under dataDir.
func NewLayout(dataDir, tenant string) Layout {
	d := filepath.Join(dataDir, "cells", tenant)
	return Layout{
		Dir:        d,
		Home:       filepath.Join(d, "home"),
		CipherHome: filepath.Join(d, "home.enc"),
		Workspace:  filepath.Join(d, "workspace"),
		CacheDir:   filepath.Join(d, "cache"),
		ConfigDir:  filepath.Join(d, "config"),
		BinDir:     filepath.Join(d, "bin"),
		RunDir:     filepath.Join(d, "run"),
		PluginDir:  filepath.Join(d, "plugin"),
	}
}

// Paths inside the layout.
func (l Layout) ConfigFile() string    { return filepath.Join(l.ConfigDir, "openclaw.json") }
func (l Layout) ProviderFile() string  { return filepath.Join(l.BinDir, "secrets-provider") }
func (l Layout) CellSocket() string    { return filepath.Join(l.RunDir, "cell.sock") }
func (l Layout) EgressSocket() string  { return filepath.Join(l.RunDir, "egress.sock") }
func (l Layout) GatewaySocket() string { return filepath.Join(l.Dir, "gateway.sock") }
func (l Layout) LogFile() string       { return filepath.Join(l.Home, "logs", "gateway.log") }
func (l Layout) StateDir() string      { return filepath.Join(l.Home, ".openclaw") }

// IDs are the host uid and gid a cell's root maps to.
type IDs struct{ UID, GID int }

// uidBase starts the range cell uids are drawn from: far above any
// account a distribution or an administrator creates, below the 2^31
// boundary some tools mishandle.
const uidBase = 0x60000000

// IDsFor returns tenant's host ids: when clawhold runs as root, a uid of
// its own per tenant (a cell that escapes its sandbox still cannot read
// another cell's files, which belong to another uid); otherwise the
// caller's own ids, as an unprivileged sandbox must use.
func IDsFor(tenant string) IDs {
	if os.Geteuid() != 0 {
		uid, gid := sandbox.HostIDs(-1, -1)
		return IDs{uid, gid}
	}
	h := fnv.New32a()
	h.Write([]byte(tenant))
	id := uidBase + int(h.Sum32()%0x1000_0000)
	return IDs{id, id}
}

// Prepare creates the layout's directories with their owners and modes,
// fixing those of an existing layout.
func (l Layout) Prepare(ids IDs) error {
	type dir struct {
		path  string
		mode  os.FileMode
		owned bool // by the cell's uid
	}
	dirs := []dir{
		{l.Dir, 0o700, false},
		{l.Home, 0o700, true},
		{filepath.Join(l.Home, "logs"), 0o700, true},
		{filepath.Join(l.Home, "tmp"), 0o700, true},
		{l.StateDir(), 0o700, true},
		{l.Workspace, 0o700, true},
		{l.CacheDir, 0o700, true},
		{l.ConfigDir, 0o755, false},
		{l.BinDir, 0o755, false},
		{l.RunDir, 0o755, false},
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("cell: creating %s: %w", d.path, err)
		}
		uid, gid := os.Geteuid(), os.Getegid()
		if d.owned {
			uid, gid = ids.UID, ids.GID
		}
		if err := os.Lchown(d.path, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("cell: chown %s: %w", d.path, err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("cell: chmod %s: %w", d.path, err)
		}
	}
	return nil
}
