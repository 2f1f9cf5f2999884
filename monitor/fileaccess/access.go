// Package fileaccess watches credential and state files (OpenClaw's
// credentials, .env files, ~/.ssh, ~/.aws, clawhold's own data dir) and
// reports every open of them together with the process that made it.
//
// Three kernel interfaces are tried in order (Watcher.Mode says which one is
// active):
//
//   - "fanotify-perm": a FAN_CLASS_CONTENT group with FAN_OPEN_PERM. The
//     opener is held inside open(2) while /proc/<pid> is read, so even a
//     `cat` that lives a millisecond is attributed; the answer is always
//     FAN_ALLOW (this package observes, it never denies).
//   - "fanotify": notification-only FAN_OPEN. The pid is exact but the
//     process may be gone before /proc is read, so Exe/Argv can be empty.
//   - "inotify": no pid at all (Access.Pid is 0, "unattributed").
//
// One Access is emitted per open, not per read(2): the kind ("read" or
// "write") comes from the matching close event (FAN_CLOSE_WRITE vs
// FAN_CLOSE_NOWRITE, the file's open mode), and an open still held after
// Options.OpenTimeout is reported from the opener's /proc/<pid>/fdinfo.
//
// Do not watch files the watching process itself holds POSIX (fcntl)
// locks on, such as its own SQLite databases: fanotify hands over a
// descriptor of the file with each event, and closing any descriptor of a
// file drops every POSIX lock the process holds on it. SQLite then loses
// its locks without knowing, and another process closing the database can
// delete the WAL this one still writes to.
package fileaccess

import (
	"path"
	"time"
)

// Access kinds.
const (
	KindRead  = "read"
	KindWrite = "write"
)

// Modes, as returned by Watcher.Mode and accepted by Options.Mode.
const (
	ModeFanotifyPerm = "fanotify-perm"
	ModeFanotify     = "fanotify"
	ModeInotify      = "inotify"
)

// Access is one open of a watched file.
type Access struct {
	Time  time.Time `json:"time"`            // when the open was seen
	Path  string    `json:"path"`            // the path given to Add (plus the child's name for directories)
	Label string    `json:"label,omitempty"` // label given to Add
	Kind  string    `json:"kind"`            // KindRead or KindWrite (file opened for writing)

	// Process. Pid 0 means unattributed (inotify mode). Pids are host pids,
	// UID the effective uid as seen from the host (user namespaces mapped).
	Pid    int      `json:"pid"`
	PPid   int      `json:"ppid,omitempty"`
	UID    int      `json:"uid"` // -1 when unknown
	Exe    string   `json:"exe,omitempty"`
	Argv   []string `json:"argv,omitempty"`
	Comm   string   `json:"comm,omitempty"`
	PidNS  uint64   `json:"pidns,omitempty"`  // inode of /proc/<pid>/ns/pid
	Cgroup string   `json:"cgroup,omitempty"` // the pids controller's path on v1, the unified path on v2

	// Self is set for opens by the process running the Watcher (its own
	// database, logs, keys). Consumers should usually ignore these: acting
	// on them (writing an event to a watched data dir) makes more of them.
	Self bool `json:"self,omitempty"`
}

// Expect describes a process that is expected to open a path.
type Expect struct {
	Exe string // exact path, or a path.Match glob; "" matches any
	UID int    // -1 matches any
	Pid int    // 0 matches any
}

// Matches reports whether a was made by a process described by one of e.
// An unattributed access (Pid 0) matches only entries that ask for nothing
// but the path (Exe "", UID -1, Pid 0).
func (a Access) Matches(e []Expect) bool {
	for _, x := range e {
		if x.Pid != 0 && x.Pid != a.Pid {
			continue
		}
		if x.UID >= 0 && (a.Pid == 0 || x.UID != a.UID) {
			continue
		}
		if x.Exe != "" {
			if a.Exe == "" {
				continue
			}
			if x.Exe != a.Exe {
				if ok, err := path.Match(x.Exe, a.Exe); err != nil || !ok {
					continue
				}
			}
		}
		return true
	}
	return false
}
