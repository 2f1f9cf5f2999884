// Command cells is bench/cells.sh's load generator: it keeps cells busy
// through their gateway sockets, as the front door would reach them, and
// prints one markdown row per cell.
//
//	cells -d 30s -c 2 TENANT=SOCKET:USER ...
//
// Each of the -c workers per cell loops: POST /tools/invoke
// {"tool":"sessions_list"} with the front door's identity headers (the
// tool call also runs clawhold's before_tool_call hook over the cell
// socket), then GET /readyz. No model is involved: an agent run would need
// one.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type cell struct {
	tenant, sock, user string

	mu            sync.Mutex
	invokes, errs int
	readyz        int
	lat           []time.Duration // /tools/invoke
	firstErr      string
}

func main() {
	dur := flag.Duration("d", 30*time.Second, "how long to load")
	conc := flag.Int("c", 2, "workers per cell")
	flag.Parse()
	var cells []*cell
	for _, a := range flag.Args() {
		t, rest, ok1 := strings.Cut(a, "=")
		s, u, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			fmt.Fprintf(os.Stderr, "cells: want TENANT=SOCKET:USER, got %q\n", a)
			os.Exit(2)
		}
		cells = append(cells, &cell{tenant: t, sock: s, user: u})
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range cells {
		for range *conc {
			wg.Add(1)
			go func() { defer wg.Done(); c.work(ctx) }()
		}
	}
	wg.Wait()
	secs := dur.Seconds()
	fmt.Println("| cell | /tools/invoke per s | /readyz per s | errors | invoke p50 (ms) | invoke p99 (ms) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, c := range cells {
		slices.Sort(c.lat)
		fmt.Printf("| %s | %.1f | %.1f | %d | %.0f | %.0f |\n", c.tenant, float64(c.invokes)/secs, float64(c.readyz)/secs, c.errs, ms(pct(c.lat, 50)), ms(pct(c.lat, 99)))
		if c.firstErr != "" {
			fmt.Fprintf(os.Stderr, "cells: %s: first error: %s\n", c.tenant, c.firstErr)
		}
	}
}

func (c *cell) work(ctx context.Context) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.sock)
		},
	}}
	body := []byte(`{"tool":"sessions_list","args":{"limit":5}}`)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1/tools/invoke", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		// What the front door sends for an operator (frontdoor/proxy).
		req.Header.Set("X-Forwarded-User", c.user)
		req.Header.Set("X-Openclaw-Scopes", "operator.read,operator.write")
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "localhost")
		t0 := time.Now()
		ok, msg := do(client, req)
		d := time.Since(t0)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if ok {
			c.invokes++
			c.lat = append(c.lat, d)
		} else {
			c.errs++
			if c.firstErr == "" {
				c.firstErr = msg
			}
		}
		c.mu.Unlock()
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/readyz", nil)
		ok, msg = do(client, req)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if ok {
			c.readyz++
		} else {
			c.errs++
			if c.firstErr == "" {
				c.firstErr = msg
			}
		}
		c.mu.Unlock()
	}
}

func do(client *http.Client, req *http.Request) (bool, string) {
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || (req.Method == http.MethodPost && !bytes.Contains(b, []byte(`"ok":true`))) {
		return false, fmt.Sprintf("%s %s: %d %.200s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return true, ""
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
