package sandbox

import (
	"context"
	"embed"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/sandbox/preflight"
)

//go:embed profiles/*.yaml
var builtinProfiles embed.FS

// Profile is a sandbox profile (docs/sandbox.md).
type Profile = config.SandboxProfile

// Builtins lists the built-in profile names.
func Builtins() []string {
	ents, _ := builtinProfiles.ReadDir("profiles")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// LoadProfile returns the built-in profile name, or reads the profile file
// name when it contains a "/" or ends in .yaml.
func LoadProfile(name string) (*Profile, error) {
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading sandbox profile: %w", err)
		}
		return config.LoadSandboxProfile(name, data)
	}
	data, err := builtinProfiles.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in sandbox profile %q (built-in: %s); give a file path for your own", name, strings.Join(Builtins(), ", "))
	}
	return config.LoadSandboxProfile("builtin:"+name, data)
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Expand returns a copy of p with every ${NAME} in its paths and env
// replaced from vars. A variable p uses but vars lacks is an error naming
// the flag that sets it; values must be absolute, clean paths.
func Expand(p *Profile, vars map[string]string) (*Profile, error) {
	q := *p
	var missing []string
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := vars[name]
			if !ok {
				if !slices.Contains(missing, name) {
					missing = append(missing, name)
				}
				return ref
			}
			return v
		})
	}
	for name, v := range vars {
		if !path.IsAbs(v) || path.Clean(v) != v {
			return nil, fmt.Errorf("--var %s=%q: give an absolute, clean path", name, v)
		}
	}
	mapList := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expand(s)
		}
		return out
	}
	q.Filesystem.ReadOnly = mapList(p.Filesystem.ReadOnly)
	q.Filesystem.ReadWrite = mapList(p.Filesystem.ReadWrite)
	q.Cwd, q.Home = expand(p.Cwd), expand(p.Home)
	q.Env = make(map[string]string, len(p.Env))
	for k, v := range p.Env {
		q.Env[k] = expand(v)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		var flags []string
		for _, m := range missing {
			flags = append(flags, "--var "+m+"=/path")
		}
		return nil, fmt.Errorf("sandbox profile %s uses %s: give %s", p.Path, strings.Join(missing, ", "), strings.Join(flags, " "))
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return &q, nil
}

// RequiredLayers are the host layers that p uses and does not list under
// degraded.
func RequiredLayers(p *Profile) []preflight.Layer {
	need := []preflight.Layer{preflight.UserNS, preflight.MountNS, preflight.PidNS, preflight.NetNS, preflight.IPCNS,
		preflight.UTSNS, preflight.Landlock, preflight.Seccomp, preflight.NoNewPrivs}
	if p.ExecLog {
		need = append(need, preflight.SeccompNotify)
	}
	l := p.Limits
	if l.CPU > 0 || l.Memory > 0 || l.Pids > 0 {
		need = append(need, preflight.Cgroups)
	}
	if l.CPU > 0 {
		need = append(need, preflight.CPUCtl)
	}
	if l.Memory > 0 {
		need = append(need, preflight.MemoryCtl)
	}
	if l.Pids > 0 {
		need = append(need, preflight.PidsCtl)
	}
	return slices.DeleteFunc(need, func(l preflight.Layer) bool { return slices.Contains(p.Degraded, string(l)) })
}

// Fit checks p against what the host offers (preflight.Static) and returns
// the profile to run. A layer p needs that the host lacks is an error with
// its fix; one p lists under degraded is switched off in the returned copy
// (its limit zeroed, Landlock or the exec log left out) and named in the
// warnings.
func Fit(ctx context.Context, p *Profile) (*Profile, []string, error) {
	rep := preflight.Static(ctx)
	if err := rep.Require(RequiredLayers(p)); err != nil {
		return nil, nil, fmt.Errorf("sandbox profile %s: %w", p.Path, err)
	}
	q := *p
	var warnings []string
	for _, d := range p.Degraded {
		res, ok := rep.Result(preflight.Layer(d))
		if !ok || res.OK {
			continue
		}
		switch preflight.Layer(d) {
		case preflight.Cgroups:
			q.Limits = config.SandboxLimits{}
		case preflight.CPUCtl:
			q.Limits.CPU = 0
		case preflight.MemoryCtl:
			q.Limits.Memory = 0
		case preflight.PidsCtl:
			q.Limits.Pids = 0
		case preflight.SeccompNotify:
			q.ExecLog = false
		}
		warnings = append(warnings, fmt.Sprintf("running without %s (profile lists it as degraded): %s", d, res.Detail))
	}
	return &q, warnings, nil
}
