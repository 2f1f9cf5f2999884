package egress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAsk(t *testing.T) {
	_, up := upstream(t)
	target := fmt.Sprintf("http://upstream.test:%d/", up)
	askRule := Rule{Action: Ask, Host: "upstream.test", CIDRs: loopback8}
	newCfg := func(ask func(context.Context, AskRequest) (Answer, error)) Config {
		cfg := loopbackConfig()
		cfg.Policies = map[string]Policy{"p": {Rules: []Rule{askRule}}}
		cfg.Ask = ask
		cfg.AskTimeout = 200 * time.Millisecond
		return cfg
	}
	get := func(t *testing.T, tp *testProxy) (int, string) {
		t.Helper()
		resp, err := tp.client().Get(target)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("approve once", func(t *testing.T) {
		var asked atomic.Int32
		tp := startProxy(t, newCfg(func(ctx context.Context, r AskRequest) (Answer, error) {
			asked.Add(1)
			if r.Host != "upstream.test" || r.Port != up || r.Client.Tenant != "t1" || r.Policy != "p" || len(r.Addrs) != 1 {
				return Answer{}, fmt.Errorf("unexpected request %+v", r)
			}
			return Answer{Allow: true}, nil
		}))
		for range 2 {
			if code, body := get(t, tp); code != 200 {
				t.Fatalf("status %d %s", code, body)
			}
		}
		if asked.Load() != 2 {
			t.Errorf("asked %d times, want 2 (approval was once)", asked.Load())
		}
		if e := tp.events.wait(t, 2)[0]; e.Asked != "once" || e.Action != Allow {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("approve and remember", func(t *testing.T) {
		var asked atomic.Int32
		tp := startProxy(t, newCfg(func(ctx context.Context, r AskRequest) (Answer, error) {
			asked.Add(1)
			return Answer{Allow: true, Remember: true}, nil
		}))
		for range 3 {
			if code, body := get(t, tp); code != 200 {
				t.Fatalf("status %d %s", code, body)
			}
		}
		if asked.Load() != 1 {
			t.Errorf("asked %d times, want 1 (approval was remembered)", asked.Load())
		}
		ev := tp.events.wait(t, 3)
		// Events are emitted when each request finishes, which need not be
		// in request order: order them by when the requests started.
		slices.SortFunc(ev, func(a, b Event) int { return a.Time.Compare(b.Time) })
		if ev[0].Asked != "remember" || ev[1].Asked != "" || ev[1].Action != Allow {
			t.Errorf("events %+v", ev)
		}
		// Remembered for this host and port only.
		d, _ := tp.proxy.Check(context.Background(), "p", "upstream.test", up+1)
		if d.Action != Ask {
			t.Errorf("another port: %s, want ask", d.Action)
		}
	})
	t.Run("deny", func(t *testing.T) {
		tp := startProxy(t, newCfg(func(ctx context.Context, r AskRequest) (Answer, error) {
			return Answer{Allow: false, Remember: true}, nil
		}))
		if code, body := get(t, tp); code != 403 || !strings.Contains(body, "approver denied") {
			t.Errorf("status %d %q, want 403", code, body)
		}
		tp.noDial(t)
	})
	t.Run("timeout denies", func(t *testing.T) {
		tp := startProxy(t, newCfg(func(ctx context.Context, r AskRequest) (Answer, error) {
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // an approver that answers yes too late
			return Answer{Allow: true}, nil
		}))
		start := time.Now()
		code, body := get(t, tp)
		if code != 403 || !strings.Contains(body, "approval timed out") {
			t.Errorf("status %d %q, want 403 timed out", code, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %s", d)
		}
		if e := tp.events.wait(t, 1)[0]; e.Asked != "timeout" || e.Action != Deny {
			t.Errorf("event %+v", e)
		}
		tp.noDial(t)
	})
	t.Run("error denies", func(t *testing.T) {
		tp := startProxy(t, newCfg(func(ctx context.Context, r AskRequest) (Answer, error) {
			return Answer{Allow: true}, errNoApprover
		}))
		if code, _ := get(t, tp); code != 403 {
			t.Errorf("status %d, want 403", code)
		}
	})
	t.Run("no approver", func(t *testing.T) {
		tp := startProxy(t, newCfg(nil))
		if code, body := get(t, tp); code != 403 || !strings.Contains(body, "no approver is configured") {
			t.Errorf("status %d %q", code, body)
		}
	})
	_ = http.StatusOK
}
