package anomaly

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MMDBLocator places addresses with a MaxMind-format City database
// (GeoLite2-City, DB-IP City Lite, IPinfo).
type MMDBLocator struct {
	db *maxminddb.Reader
}

// NewMMDBLocator opens a City database.
func NewMMDBLocator(path string) (*MMDBLocator, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening City database %s: %w", path, err)
	}
	return &MMDBLocator{db: db}, nil
}

// Close releases the database.
func (l *MMDBLocator) Close() error { return l.db.Close() }

// Locate returns where ip is; false for unparsable, private or unknown
// addresses. It fits Options.Locate.
func (l *MMDBLocator) Locate(ip string) (Location, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Location{}, false
	}
	a = a.Unmap()
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		return Location{}, false
	}
	var rec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		City struct {
			Names map[string]string `maxminddb:"names"`
		} `maxminddb:"city"`
		Location struct {
			Latitude  *float64 `maxminddb:"latitude"`
			Longitude *float64 `maxminddb:"longitude"`
		} `maxminddb:"location"`
	}
	res := l.db.Lookup(a)
	if !res.Found() {
		return Location{}, false
	}
	if err := res.Decode(&rec); err != nil {
		return Location{}, false
	}
	loc := Location{Country: rec.Country.ISOCode, City: rec.City.Names["en"]}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		loc.Lat, loc.Lon, loc.Coords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	if loc.Country == "" && !loc.Coords {
		return Location{}, false
	}
	return loc, true
}
