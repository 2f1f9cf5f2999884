package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/sandbox/cgroup"
)

// requireRoot skips unprivileged runs, except in CI where a skip would hide
// a broken environment.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root: the cgroup probe and fanotify need CAP_SYS_ADMIN"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, refusing to skip")
	}
	t.Skip(msg)
}

// TestCheckThisHost pins down what this (CI) host offers: every namespace,
// cgroup v1 with cpu, memory and pids, Landlock, seccomp with user_notif.
func TestCheckThisHost(t *testing.T) {
	requireRoot(t)
	r := Check(context.Background())
	t.Logf("\n%s", r.Text())
	for _, l := range Layers {
		res, ok := r.Result(l)
		if !ok {
			t.Errorf("layer %s not reported", l)
			continue
		}
		if !res.OK {
			t.Errorf("%s: MISSING: %s (fix: %s)", l, res.Detail, res.Fix)
		}
		if res.Detail == "" {
			t.Errorf("%s: empty detail", l)
		}
	}
	if r.CgroupMode != cgroup.DetectMode() || r.CgroupMode == cgroup.Unavailable {
		t.Errorf("CgroupMode = %v", r.CgroupMode)
	}
	if r.CgroupMode == cgroup.V1 {
		res, _ := r.Result(Cgroups)
		for _, want := range []string{"cgroup v1", "cpu", "memory", "pids"} {
			if !strings.Contains(res.Detail, want) {
				t.Errorf("cgroups detail %q lacks %q", res.Detail, want)
			}
		}
	}
	if r.LandlockABI < 1 {
		t.Errorf("LandlockABI = %d, want >= 1", r.LandlockABI)
	}
	if res, _ := r.Result(Landlock); !strings.Contains(res.Detail, "Landlock ABI") {
		t.Errorf("landlock detail %q", res.Detail)
	}
	if len(r.Missing(Layers)) != 0 {
		t.Errorf("Missing(all) = %v on a fully capable host", r.Missing(Layers))
	}
	// The probe cgroup must be gone.
	for _, d := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "clawhold-preflight-") {
				t.Errorf("probe cgroup left behind: %s/%s", d, e.Name())
			}
		}
	}
}

func TestCheckHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Check(ctx)
	if res, _ := r.Result(UserNS); res.OK {
		t.Error("userns probe succeeded with a cancelled context")
	}
	if len(r.Results) != len(Layers) {
		t.Errorf("%d results, want %d", len(r.Results), len(Layers))
	}
}

func synthetic() Report {
	return Report{
		CgroupMode:   cgroup.V2,
		CgroupHybrid: false,
		LandlockABI:  0,
		Kernel:       "5.4.0-test",
		Sysctls:      map[string]string{sysctlAppArmorUserNS: "1"},
		Results: []Result{
			{Layer: UserNS, Detail: "clone(CLONE_NEWUSER): operation not permitted", Fix: "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"},
			{Layer: MountNS, OK: true, Detail: "unshared inside a user namespace"},
			{Layer: Cgroups, OK: true, Detail: "cgroup v2: cpu memory pids"},
			{Layer: Landlock, Detail: "not implemented", Fix: "use Linux 5.13+"},
			{Layer: Seccomp, OK: true, Detail: "filter actions: errno"},
		},
	}
}

func TestMissing(t *testing.T) {
	r := synthetic()
	tests := []struct {
		name     string
		required []Layer
		want     []Layer
	}{
		{"nothing required", nil, nil},
		{"all present", []Layer{MountNS, Cgroups, Seccomp}, nil},
		{"one missing", []Layer{MountNS, Landlock}, []Layer{Landlock}},
		{"order follows required", []Layer{Landlock, UserNS, Seccomp}, []Layer{Landlock, UserNS}},
		{"unprobed counts as missing", []Layer{Fanotify, Seccomp}, []Layer{Fanotify}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Missing(tt.required)
			var layers []Layer
			for _, res := range got {
				layers = append(layers, res.Layer)
				if res.OK || res.Fix == "" {
					t.Errorf("missing result %+v should be !OK with a fix", res)
				}
			}
			if strings.Join(toStrings(layers), ",") != strings.Join(toStrings(tt.want), ",") {
				t.Errorf("Missing(%v) = %v, want %v", tt.required, layers, tt.want)
			}
		})
	}
}

func TestRequire(t *testing.T) {
	r := synthetic()
	if err := r.Require([]Layer{MountNS, Seccomp}); err != nil {
		t.Errorf("Require(present layers) = %v", err)
	}
	err := r.Require([]Layer{UserNS, MountNS, Landlock})
	var me *MissingError
	if !errors.As(err, &me) || len(me.Missing) != 2 {
		t.Fatalf("Require = %v, want a MissingError with 2 layers", err)
	}
	for _, want := range []string{"userns", "landlock", "apparmor_restrict_unprivileged_userns=0", "Linux 5.13+"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func toStrings(ls []Layer) []string {
	var s []string
	for _, l := range ls {
		s = append(s, string(l))
	}
	return s
}

func TestTextAndJSON(t *testing.T) {
	reports := []struct {
		name string
		r    Report
	}{{"synthetic", synthetic()}}
	if os.Geteuid() == 0 {
		reports = append(reports, struct {
			name string
			r    Report
		}{"this host", Check(context.Background())})
	}
	for _, tt := range reports {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.r.Text()
			lines := strings.Split(strings.TrimSpace(text), "\n")
			for _, res := range tt.r.Results {
				found := false
				for _, line := range lines {
					if f := strings.Fields(line); len(f) > 1 && f[0] == string(res.Layer) {
						found = true
						status := map[bool]string{true: "ok", false: "MISSING"}[res.OK]
						if f[1] != status {
							t.Errorf("text line %q: status %q, want %q", line, f[1], status)
						}
						if !res.OK && !strings.Contains(line, strings.Fields(res.Fix)[0]) {
							t.Errorf("text line %q lacks the fix %q", line, res.Fix)
						}
					}
				}
				if !found {
					t.Errorf("text lacks layer %s:\n%s", res.Layer, text)
				}
			}
			// Columns line up: DETAIL starts at the same offset everywhere.
			hdr := strings.Index(text, "DETAIL")
			start := strings.LastIndex(text[:hdr], "\n") + 1
			col := hdr - start
			for _, line := range lines[2:] {
				if len(line) > col && line[col-1] != ' ' {
					t.Errorf("misaligned line %q (detail column %d)", line, col)
				}
			}

			b, err := tt.r.JSON()
			if err != nil {
				t.Fatal(err)
			}
			var generic map[string]any
			if err := json.Unmarshal(b, &generic); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"results", "cgroup_mode", "landlock_abi", "kernel", "root"} {
				if _, ok := generic[k]; !ok {
					t.Errorf("JSON lacks key %q: %s", k, b)
				}
			}
			for _, res := range tt.r.Results {
				if !strings.Contains(string(b), `"layer": "`+string(res.Layer)+`"`) {
					t.Errorf("JSON lacks layer %s", res.Layer)
				}
			}
			if strings.ContainsAny(strings.Join(keys(generic), ""), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("JSON keys not lowercase: %v", keys(generic))
			}
			var back Report
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.CgroupMode != tt.r.CgroupMode || len(back.Results) != len(tt.r.Results) {
				t.Errorf("JSON round trip lost data: %+v", back)
			}
		})
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestUserNSFixNamesSysctl(t *testing.T) {
	tests := []struct {
		sysctls map[string]string
		want    string
	}{
		{map[string]string{sysctlAppArmorUserNS: "1"}, "kernel.apparmor_restrict_unprivileged_userns=0"},
		{map[string]string{sysctlUserNSClone: "0"}, "kernel.unprivileged_userns_clone=1"},
		{map[string]string{sysctlMaxUserNS: "0"}, "user.max_user_namespaces=15000"},
		{map[string]string{sysctlMaxUserNS: "1000"}, "seccomp"},
	}
	for _, tt := range tests {
		r := &Report{Sysctls: tt.sysctls}
		if got := r.userNSFix(); !strings.Contains(got, tt.want) {
			t.Errorf("userNSFix(%v) = %q, want it to mention %q", tt.sysctls, got, tt.want)
		}
	}
}
