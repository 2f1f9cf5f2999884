package frontdoor

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/phuslu/iploc"
)

// Locator names where a client address is, for login events (anomaly
// detection later compares them): the country from the table embedded in
// phuslu/iploc, or country and city from a MaxMind-format City database
// the operator supplies (frontdoor.geoip_city_db).
type Locator struct {
	db *maxminddb.Reader // nil: the embedded country table
}

// NewLocator opens cityDB when given.
func NewLocator(cityDB string) (*Locator, error) {
	if cityDB == "" {
		return &Locator{}, nil
	}
	db, err := maxminddb.Open(cityDB)
	if err != nil {
		return nil, fmt.Errorf("frontdoor.geoip_city_db: %w", err)
	}
	return &Locator{db: db}, nil
}

// Close releases the City database.
func (l *Locator) Close() error {
	if l == nil || l.db == nil {
		return nil
	}
	return l.db.Close()
}

// Locate returns "CC" or "CC/City" for ip, or "" for private, loopback or
// unknown addresses.
func (l *Locator) Locate(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || l == nil || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
		return ""
	}
	a = a.Unmap()
	if l.db != nil {
		var rec struct {
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
			City struct {
				Names map[string]string `maxminddb:"names"`
			} `maxminddb:"city"`
		}
		if err := l.db.Lookup(a).Decode(&rec); err == nil && rec.Country.ISOCode != "" {
			if c := rec.City.Names["en"]; c != "" {
				return rec.Country.ISOCode + "/" + c
			}
			return rec.Country.ISOCode
		}
	}
	return string(iploc.IPCountry(a))
}
