package config

import (
	"strings"
	"testing"
)

func TestLoadSandboxProfile(t *testing.T) {
	p, err := LoadSandboxProfile("p.yaml", []byte(`
description: test
degraded: [landlock]
filesystem:
  read_only: [/usr, "/lib64?", "${X}"]
  read_write: ["${STATE}"]
  etc: [passwd, ssl/certs]
  tmp_size: 64MiB
limits: {cpu: 0.5, memory: 1GiB, pids: 100}
network: {mode: none, expose: 8080}
exec_log: false
env: {A: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits.CPU != 0.5 || p.Limits.Memory != 1<<30 || p.Limits.Pids != 100 || p.Filesystem.TmpSize != 64<<20 ||
		p.ExecLog || p.Network.Mode != "none" || p.Network.ProxyPort != 3128 || p.Home != "/tmp" || p.Env["A"] != "b" {
		t.Fatalf("decoded %+v", p)
	}
}

func TestSandboxProfileErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"degraded: [seccomp]", `p.yaml:1: degraded[0] is "seccomp": it must be one of cgroups, cgroup_cpu`},
		{"filesystem:\n  etc: [shadow]", `p.yaml:2: filesystem.etc[0] is "shadow": /etc/shadow holds host secrets`},
		{"filesystem:\n  etc: [ssh/ssh_host_ed25519_key]", `/etc/ssh/ssh_host_ed25519_key holds host secrets`},
		{"filesystem:\n  etc: [/etc/passwd]", `name an entry of /etc relative to it`},
		{"filesystem:\n  etc: [../root]", `name an entry of /etc relative to it`},
		{"filesystem:\n  read_write: [/]", `a system directory cannot be writable`},
		{"filesystem:\n  read_write: [/etc/x]", `a system directory cannot be writable`},
		{"filesystem:\n  read_only: [relative]", `use an absolute path or a ${VARIABLE}`},
		{"filesystem:\n  tmp_size: 12 parsecs", `invalid size "12 parsecs"`},
		{"limits:\n  cpu: -1", `limits.cpu is -1`},
		{"limits:\n  cpu: lots", `limits.cpu: expected a number`},
		{"limits:\n  memory: 1KiB", `limits.memory is 1KiB: at least 4MiB`},
		{"limits:\n  cpus: 1", `unknown key "limits.cpus" (did you mean "limits.cpu"?)`},
		{"network:\n  mode: host", `network.mode is "host": it must be one of proxy, none`},
		{"network:\n  expose: 3128", `the same port as network.proxy_port`},
		{"network:\n  expose: 70000", `network.expose is 70000`},
		{"exec_log: maybe", `exec_log: expected true or false`},
	} {
		_, err := LoadSandboxProfile("p.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "4KiB": 4096, "64MiB": 64 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40, "10B": 10} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5GiB", "1GB", "GiB", "99999999999TiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(3 << 30).String(); s != "3GiB" {
		t.Errorf("String = %s", s)
	}
}
