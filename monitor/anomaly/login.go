package anomaly

import (
	"math"
	"strings"
)

// Location is where an address is.
type Location struct {
	Country  string // ISO 3166-1 alpha-2
	City     string
	Lat, Lon float64
	Coords   bool // Lat and Lon are known
}

// profile is what one user's logins look like.
type profile struct {
	Logins    int              `json:"logins"`
	Tenant    string           `json:"tenant,omitempty"` // learned from session.create
	Countries map[string]int64 `json:"countries"`        // ISO code → newest login, unix ms
	Devices   map[string]int64 `json:"devices"`          // "Firefox on Linux" → newest login, unix ms
	Hours     [168]float64     `json:"hours"`            // hour of week (UTC, Monday 00:00 = 0) → decayed count
	HoursAt   int64            `json:"hours_at"`         // unix ms Hours was decayed to
	Last      *login           `json:"last,omitempty"`

	firstSeen int64 // unix ms; its own column
}

// login is the previous successful login, for impossible travel.
type login struct {
	Time int64  `json:"time"` // unix ms
	IP   string `json:"ip"`
	Location
}

// maxRemembered caps the countries and devices kept per user (the oldest
// go first), so a user's row stays small whatever the input.
const maxRemembered = 32

func remember(m map[string]int64, k string, t int64) {
	m[k] = max(m[k], t)
	for len(m) > maxRemembered {
		oldest, ot := "", int64(math.MaxInt64)
		for k, v := range m {
			if v < ot || v == ot && k < oldest {
				oldest, ot = k, v
			}
		}
		delete(m, oldest)
	}
}

// hoursHalfLife is how fast old login hours fade: a month, so a changed
// schedule is learned within weeks while a holiday does not erase it.
const hoursHalfLifeMs = 30 * 24 * 3600 * 1000

func (p *profile) decayHours(t int64) {
	if t <= p.HoursAt {
		return
	}
	f := math.Pow(0.5, float64(t-p.HoursAt)/hoursHalfLifeMs)
	for i := range p.Hours {
		p.Hours[i] *= f
	}
	p.HoursAt = t
}

// hourShare is the share of the login mass in bucket b and its
// neighbours (so 08:59 and 09:01 are the same habit).
func (p *profile) hourShare(b int) float64 {
	var total float64
	for _, v := range p.Hours {
		total += v
	}
	if total == 0 {
		return 0
	}
	n := len(p.Hours)
	return (p.Hours[(b+n-1)%n] + p.Hours[b] + p.Hours[(b+1)%n]) / total
}

// hourOfWeek is 0 for Monday 00:00–00:59 UTC.
func hourOfWeek(ms int64) int {
	h := ms / 3600000
	// 1970-01-01 was a Thursday: hour 0 is Thursday 00:00 = 72 h into the week.
	return int((h + 72) % 168)
}

// haversineKm is the great-circle distance between two points.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0088 // mean Earth radius, km
	rad := math.Pi / 180
	dlat := (lat2 - lat1) * rad
	dlon := (lon2 - lon1) * rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

// parseCountry splits an event's "CC" or "CC/City".
func parseCountry(s string) Location {
	cc, city, _ := strings.Cut(s, "/")
	return Location{Country: strings.ToUpper(strings.TrimSpace(cc)), City: strings.TrimSpace(city)}
}

// Device reduces a User-Agent to browser family and OS ("Firefox on
// Linux"), so the browser updating itself is not a new device. Unknown
// agents reduce to their first product token ("curl", "Go-http-client").
func Device(ua string) string {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return ""
	}
	fam := family(ua)
	if os := opSys(ua); os != "" {
		return fam + " on " + os
	}
	return fam
}

func family(ua string) string {
	has := func(s string) bool { return strings.Contains(ua, s) }
	switch {
	case has("Edg/") || has("EdgA/") || has("EdgiOS/") || has("Edge/"):
		return "Edge"
	case has("OPR/") || has("Opera"):
		return "Opera"
	case has("SamsungBrowser/"):
		return "Samsung Internet"
	case has("Firefox/") || has("FxiOS/"):
		return "Firefox"
	case has("Chrome/") || has("CriOS/") || has("Chromium/"):
		return "Chrome"
	case has("Safari/") && (has("Version/") || has("Mobile/")):
		return "Safari"
	}
	tok, _, _ := strings.Cut(ua, " ")
	tok, _, _ = strings.Cut(tok, "/")
	if strings.EqualFold(tok, "Mozilla") || tok == "" {
		return "Other"
	}
	if len(tok) > 32 {
		tok = tok[:32]
	}
	return tok
}

func opSys(ua string) string {
	has := func(s string) bool { return strings.Contains(ua, s) }
	switch {
	case has("iPhone") || has("iPad") || has("iPod"):
		return "iOS"
	case has("Android"):
		return "Android"
	case has("CrOS"):
		return "ChromeOS"
	case has("Windows"):
		return "Windows"
	case has("Macintosh") || has("Mac OS X"):
		return "macOS"
	case has("Linux") || has("X11"):
		return "Linux"
	}
	return ""
}
