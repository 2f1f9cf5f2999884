package frontdoor

import (
	"strings"
	"testing"
)

func TestLocate(t *testing.T) {
	l, err := NewLocator("")
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]string{"8.8.8.8": "US", "127.0.0.1": "", "10.1.2.3": "", "::1": "", "fe80::1": "", "garbage": ""} {
		if got := l.Locate(ip); got != want {
			t.Errorf("Locate(%s) = %q, want %q", ip, got, want)
		}
	}
	if got := l.Locate("::ffff:8.8.8.8"); got != "US" {
		t.Errorf("IPv4-mapped address: %q", got)
	}
	if _, err := NewLocator("/nonexistent/City.mmdb"); err == nil || !strings.Contains(err.Error(), "frontdoor.geoip_city_db") {
		t.Errorf("missing City database: %v", err)
	}
	var nilLoc *Locator
	if nilLoc.Locate("8.8.8.8") != "" {
		t.Error("a nil Locator located something")
	}
}
