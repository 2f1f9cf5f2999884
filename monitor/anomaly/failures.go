package anomaly

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clawhold/clawhold/events"
)

// failures are recent failed logins, in memory only: the window is minutes
// long, so there is nothing worth keeping across a restart.
type failures struct {
	byUser    map[string][]failure        // user → newest failures, oldest first
	byIP      map[string]map[string]int64 // ip → user → newest failure, unix ms
	quietUser map[string]int64            // user → no new brute-force alert before, unix ms
	quietIP   map[string]int64            // ip → no new stuffing alert before
	seen      int
}

type failure struct {
	t  int64
	ip string
}

func newFailures() failures {
	return failures{byUser: map[string][]failure{}, byIP: map[string]map[string]int64{},
		quietUser: map[string]int64{}, quietIP: map[string]int64{}}
}

// sweepEvery is how many failures pass between sweeps of stale entries,
// which bound memory under a spray of made-up user names.
const sweepEvery = 1024

// maxListed caps the user names and addresses an alert lists.
const maxListed = 20

// failed records one failed login; brute force and credential stuffing
// need no baseline, so they alert from the first event on.
func (d *Detector) failed(ev events.Event) []Detection {
	f := &d.fails
	user, ip := ev.Subject, str(ev.Detail, "ip")
	ms := ev.Time.UnixMilli()
	win := d.opts.FailureWindow.Milliseconds()
	since := ms - win
	f.seen++
	if f.seen%sweepEvery == 0 {
		f.sweep(since)
	}
	var out []Detection
	if user != "" {
		l := f.byUser[user]
		i := 0
		for i < len(l) && l[i].t <= since {
			i++
		}
		l = append(l[i:], failure{ms, ip})
		if n := d.opts.BruteForceFailures; len(l) > n {
			l = l[len(l)-n:] // n in the window is all that matters
		}
		f.byUser[user] = l
		if len(l) >= d.opts.BruteForceFailures && ms >= f.quietUser[user] {
			f.quietUser[user] = ms + win
			ips := map[string]bool{}
			for _, x := range l {
				if x.ip != "" {
					ips[x.ip] = true
				}
			}
			addrs := slices.Sorted(maps.Keys(ips))
			if len(addrs) > maxListed {
				addrs = addrs[:maxListed]
			}
			out = append(out, Detection{Rule: RuleBruteForce, Severity: "high", User: user, Technique: "T1110.001",
				Title: fmt.Sprintf("brute force: %d failed logins for %s within %s", len(l), user, d.opts.FailureWindow),
				Evidence: map[string]any{"failures": len(l), "window": d.opts.FailureWindow.String(), "ips": addrs, "distinct_ips": len(ips),
					"first": time.UnixMilli(l[0].t).UTC().Format(time.RFC3339)}})
		}
	}
	if ip != "" && user != "" {
		us := f.byIP[ip]
		if us == nil {
			us = map[string]int64{}
			f.byIP[ip] = us
		}
		for u, t := range us {
			if t <= since {
				delete(us, u)
			}
		}
		us[user] = ms
		if len(us) >= d.opts.StuffingAccounts && ms >= f.quietIP[ip] {
			f.quietIP[ip] = ms + win
			names := slices.Sorted(maps.Keys(us))
			if len(names) > maxListed {
				names = names[:maxListed]
			}
			out = append(out, Detection{Rule: RuleCredentialStuffing, Severity: "high", Technique: "T1110.004",
				Title:    fmt.Sprintf("credential stuffing: %d accounts failed from %s within %s", len(us), ip, d.opts.FailureWindow),
				Evidence: map[string]any{"ip": ip, "accounts": len(us), "users": names, "window": d.opts.FailureWindow.String()}})
		}
	}
	return out
}

func (f *failures) sweep(since int64) {
	for u, l := range f.byUser {
		if len(l) == 0 || l[len(l)-1].t <= since {
			delete(f.byUser, u)
		}
	}
	for ip, us := range f.byIP {
		for u, t := range us {
			if t <= since {
				delete(us, u)
			}
		}
		if len(us) == 0 {
			delete(f.byIP, ip)
		}
	}
	for k, t := range f.quietUser {
		if t <= since {
			delete(f.quietUser, k)
		}
	}
	for k, t := range f.quietIP {
		if t <= since {
			delete(f.quietIP, k)
		}
	}
}
