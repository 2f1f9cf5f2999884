package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFrontdoorErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"frontdoor:\n  upstream: http://10.0.0.5:18789", "use a loopback address or a unix socket"},
		{"frontdoor:\n  upstream: unix:relative.sock", "use an absolute path"},
		{"frontdoor:\n  public_url: http://door.example", "give the https origin"},
		{"frontdoor:\n  public_url: https://door.example/path", "give the https origin"},
		{"frontdoor:\n  listen: \"8443\"", "write host:port or :port"},
		{"frontdoor:\n  tls:\n    mode: files", "needs frontdoor.tls.cert_file"},
		{"frontdoor:\n  tls:\n    mode: acme", "needs frontdoor.tls.acme_hosts"},
		{"frontdoor:\n  tls:\n    mode: letsencrypt", `frontdoor.tls.mode is "letsencrypt"`},
		{"frontdoor:\n  sessions:\n    idle_timeout: 13h", "idle_timeout <= absolute_timeout"},
		{"frontdoor:\n  lockout:\n    max_failures: 0", "frontdoor.lockout: max_failures 0"},
		{"frontdoor:\n  oidc:\n    issuer: https://login.example.com", "needs frontdoor.oidc.client_id"},
		{"frontdoor:\n  oidc:\n    role_map:\n      ops: root", `frontdoor.oidc.role_map.ops is "root"`},
		{"frontdoor:\n  user_header: \"x user\"", "frontdoor.user_header"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(c.yaml), 0o600)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.yaml, err, c.want)
		}
	}
}
