package sandbox

import (
	"context"
	"testing"
)

// BenchmarkRunTrue is the start-to-exit latency of /bin/true in a sandbox
// started from a running process (as `clawhold up` starts cells): no
// clawhold CLI start-up, no cgroup, proxy or exec log (see bench/sandbox.sh
// for the CLI beside bwrap).
func BenchmarkRunTrue(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	for _, c := range []struct {
		name string
		mod  func(*Profile)
	}{
		{"bare", func(p *Profile) { p.Network.Mode = "none"; p.ExecLog = false; p.Limits = Profile{}.Limits }},
		{"logged", func(p *Profile) { p.Network.Mode = "none"; p.Limits = Profile{}.Limits }},
		{"limits", func(p *Profile) { p.Network.Mode = "none"; p.ExecLog = false }},
		{"logged+limits", func(p *Profile) { p.Network.Mode = "none" }},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := LoadProfile("default")
			if err != nil {
				b.Fatal(err)
			}
			c.mod(p)
			for b.Loop() {
				code, err := Run(context.Background(), Options{Profile: p, Argv: []string{"/bin/true"}})
				if err != nil || code != 0 {
					b.Fatal(code, err)
				}
			}
		})
	}
}
