package anomaly

import (
	"math"
	"time"
)

// ewma is an exponentially weighted mean and variance (West 1979 /
// Finch 2009, "Incremental calculation of weighted mean and variance").
// The weight of a new sample is max(alpha, 1/n): the first samples form a
// plain running average, so a young baseline is not dragged towards the
// zero it started from.
type ewma struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Var  float64 `json:"var"`
}

func (e *ewma) add(x, alpha float64) {
	e.N++
	a := max(alpha, 1/float64(e.N))
	d := x - e.Mean
	inc := a * d
	e.Mean += inc
	e.Var = (1 - a) * (e.Var + d*inc)
}

// bound is mean + k·σ, where σ is at least √mean: counts are roughly
// Poisson, so a perfectly steady series still has that much noise, and a
// zero-variance baseline does not alert on one event more than usual.
func (e ewma) bound(k float64) float64 {
	sd := math.Sqrt(max(e.Var, 0))
	return e.Mean + k*max(sd, math.Sqrt(max(e.Mean, 0)))
}

func (e ewma) stddev() float64 { return math.Sqrt(max(e.Var, 0)) }

// Smoothing weights, as half-lives: a week for the hour-by-hour series (a
// change of habit is absorbed within days), a week of days for each
// hour-of-day bucket.
var (
	alphaHour = 1 - math.Pow(0.5, 1.0/(7*24))
	alphaDay  = 1 - math.Pow(0.5, 1.0/7)
)

// maxGap bounds the empty hours closed one by one after a silence; after
// four weeks of zeros with a one-week half-life the baseline is ~6% of
// what it was, and more iterations would change nothing that matters.
const maxGap = 4 * 7 * 24

// series is the learned hourly rate of one (metric, key): the counts of
// closed hours feed an overall EWMA and one per hour of day, so a nightly
// job that runs at 02:00 is normal at 02:00.
type series struct {
	Hour    int64    `json:"hour"`  // the open hour, unix hours
	Count   float64  `json:"count"` // events in the open hour
	Alerted bool     `json:"alerted,omitempty"`
	Last    int64    `json:"last"` // newest event, unix ms
	All     ewma     `json:"all"`
	HOD     [24]ewma `json:"hod"`

	firstSeen int64 // unix ms; its own column
}

func unixHour(t time.Time) int64 { return t.Unix() / 3600 }

// advance closes every hour before h.
func (s *series) advance(h int64) {
	if h <= s.Hour {
		return
	}
	if h-s.Hour > maxGap {
		// Close the open hour, then only the last maxGap empty ones.
		s.close()
		s.Hour = h - maxGap
	}
	for s.Hour < h {
		s.close()
	}
}

func (s *series) close() {
	s.All.add(s.Count, alphaHour)
	s.HOD[s.Hour%24].add(s.Count, alphaDay)
	s.Hour++
	s.Count = 0
	s.Alerted = false
}

// seasonalDays is how many days of one hour of day make its own baseline
// trustworthy enough to stand alone.
const seasonalDays = 7

// threshold is the learned ceiling of the open hour, at least floor. Once
// this hour of day has a week of history its own bound is used, so a
// nightly job neither alerts at night nor hides a burst by day; before
// that, the higher of the overall and hour-of-day bounds.
func (s *series) threshold(k, floor float64) float64 {
	hod := s.HOD[s.Hour%24]
	var t float64
	switch {
	case hod.N >= seasonalDays:
		t = hod.bound(k)
	case hod.N > 0:
		t = max(s.All.bound(k), hod.bound(k))
	default:
		t = s.All.bound(k)
	}
	return max(t, floor)
}

// samples is the number of closed hours learned from.
func (s *series) samples() int { return s.All.N }
