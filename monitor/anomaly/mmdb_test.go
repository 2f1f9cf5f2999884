package anomaly

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeCityDB builds a small City database in the GeoIP2-City layout.
func writeCityDB(t *testing.T) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 28})
	if err != nil {
		t.Fatal(err)
	}
	city := func(cc, name string, lat, lon float64) mmdbtype.Map {
		return mmdbtype.Map{
			"country":  mmdbtype.Map{"iso_code": mmdbtype.String(cc)},
			"city":     mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(name)}},
			"location": mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon)},
		}
	}
	for cidr, rec := range map[string]mmdbtype.Map{
		"81.2.69.0/24":   city("GB", "London", 51.5142, -0.0931),
		"89.160.20.0/24": city("SE", "Linköping", 58.4167, 15.6167),
		"2.125.160.0/24": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")}}, // country only
	} {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMMDBLocator(t *testing.T) {
	l, err := NewMMDBLocator(writeCityDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct {
		ip   string
		want Location
		ok   bool
	}{
		{"81.2.69.160", Location{Country: "GB", City: "London", Lat: 51.5142, Lon: -0.0931, Coords: true}, true},
		{"::ffff:89.160.20.112", Location{Country: "SE", City: "Linköping", Lat: 58.4167, Lon: 15.6167, Coords: true}, true},
		{"2.125.160.216", Location{Country: "GB"}, true},
		{"8.8.8.8", Location{}, false},
		{"10.1.2.3", Location{}, false},
		{"127.0.0.1", Location{}, false},
		{"not-an-ip", Location{}, false},
	} {
		got, ok := l.Locate(tt.ip)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Locate(%s) = %+v, %v; want %+v, %v", tt.ip, got, ok, tt.want, tt.ok)
		}
	}
	if _, err := NewMMDBLocator(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("opened a missing database")
	}
}

func TestImpossibleTravelWithMMDB(t *testing.T) {
	l, err := NewMMDBLocator(writeCityDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := New(Options{Locate: l.Locate, LearningPeriod: 1})
	// London → Linköping (1,260 km) in one hour, then back after a day.
	got := feed(t, d, sys(
		loginEv("carol", at(0, 9, 0), "81.2.69.160", "GB", firefox120),
		loginEv("carol", at(0, 10, 0), "89.160.20.112", "SE", firefox120),
		loginEv("carol", at(1, 10, 0), "81.2.69.160", "GB", firefox120)))
	if rs := rules(got); len(rs) != 2 || rs[0] != RuleNewCountry || rs[1] != RuleImpossibleTravel {
		t.Fatalf("rules = %v", rs)
	}
	if km := got[1].Evidence["km"].(float64); km < 1200 || km > 1300 {
		t.Fatalf("km = %v", km)
	}
}
