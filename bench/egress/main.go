// Command egress is the load generator for bench/egress.sh: it compares HTTP
// forward proxies (clawhold egress, squid, tinyproxy) side by side on
// loopback. It runs its own upstreams on 127.0.0.1 — a raw TCP source/sink
// for tunnel throughput and tunnel rate, and a plain HTTP/1.1 server for
// latency — and measures, for every target given by -proxy (and a direct,
// proxy-less baseline unless -direct=false):
//
//   - throughput: one CONNECT tunnel carrying -bytes upstream→client
//     (and client→upstream with -up), MB/s with MB = 10^6 bytes;
//   - connrate: -conc clients for -duration, each repeatedly opening a TCP
//     connection to the proxy, CONNECTing to the upstream, exchanging one
//     small message and closing; tunnels/s;
//   - latency: -lat-n sequential GET requests (-lat-conc workers), p50/p99 in
//     microseconds, in four modes: absolute-URI forwarding with a new
//     connection per request (fwd-new) and with keep-alive (fwd-ka), and HTTP
//     inside a CONNECT tunnel, a new tunnel per request (connect-new) or one
//     tunnel for all (connect-ka). "Added" latency is the proxy's percentile
//     minus the direct percentile of the same connection model. Targets are
//     interleaved request by request (-interleave), each with its own HTTP
//     upstream, whose accepted connections are counted (upstream pooling).
//
// Throughput and connrate run one target after the other (they saturate the
// CPU); -rounds repeats everything and reports the median round (the upper
// one for an even count).
//
// One JSON line per measurement goes to stdout (and -json), then a
// side-by-side table (and -md). It never dials anything but 127.0.0.1 and the
// given proxies, which must be on loopback too.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type target struct {
	Name  string
	Proxy string // host:port; "" for direct
}

type result struct {
	Target   string   `json:"target"`
	Metric   string   `json:"metric"`          // throughput | connrate | latency
	Mode     string   `json:"mode,omitempty"`  // down/up; fwd-new/fwd-ka/connect-new/connect-ka
	Bytes    int64    `json:"bytes,omitempty"` // throughput
	Seconds  float64  `json:"seconds,omitempty"`
	MBs      float64  `json:"mb_s,omitempty"`
	Conc     int      `json:"conc,omitempty"`
	Tunnels  int64    `json:"tunnels,omitempty"`
	TunnelsS float64  `json:"tunnels_s,omitempty"`
	N        int      `json:"n,omitempty"`
	Conns    int64    `json:"conns,omitempty"`          // latency: TCP connections used (keep-alive reuse check)
	UpConns  int64    `json:"upstream_conns,omitempty"` // latency: connections the HTTP upstream accepted
	Retries  int64    `json:"retries,omitempty"`        // latency: requests retried after the proxy closed a kept-alive connection
	P50us    float64  `json:"p50_us,omitempty"`
	P99us    float64  `json:"p99_us,omitempty"`
	MeanUs   float64  `json:"mean_us,omitempty"`
	AddP50us *float64 `json:"added_p50_us,omitempty"`
	AddP99us *float64 `json:"added_p99_us,omitempty"`
	Errors   int64    `json:"errors"`
	FirstErr string   `json:"first_error,omitempty"`
	Skipped  bool     `json:"skipped,omitempty"`
}

var (
	upTCP     string                       // raw source/sink upstream, 127.0.0.1:port
	upHTTP    = map[string]*httpUpstream{} // per target, so each proxy's upstream connections are counted apart
	ioTimeout time.Duration
)

type proxyList []target

func (p *proxyList) String() string { return fmt.Sprint(*p) }
func (p *proxyList) Set(v string) error {
	name, raw, ok := strings.Cut(v, "=")
	if !ok {
		raw, name = v, ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("want [name=]http://127.0.0.1:PORT, got %q", v)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("proxy %q is not a loopback IP address; this benchmark only runs on loopback", u.Host)
	}
	if name == "" {
		name = u.Host
	}
	*p = append(*p, target{Name: name, Proxy: u.Host})
	return nil
}

func main() {
	var proxies proxyList
	flag.Var(&proxies, "proxy", "proxy to measure, [name=]http://127.0.0.1:PORT (repeatable)")
	direct := flag.Bool("direct", true, "also measure without a proxy (baseline for added latency)")
	tests := flag.String("tests", "throughput,connrate,latency", "comma-separated tests to run")
	nbytes := flag.Int64("bytes", 1<<30, "throughput: bytes per transfer")
	up := flag.Bool("up", false, "throughput: also measure client→upstream")
	conc := flag.Int("conc", 64, "connrate: concurrent clients")
	dur := flag.Duration("duration", 10*time.Second, "connrate: measuring time per target")
	latN := flag.Int("lat-n", 2000, "latency: requests per mode and target")
	latWarm := flag.Int("lat-warmup", 100, "latency: unmeasured requests first")
	latConc := flag.Int("lat-conc", 1, "latency: concurrent workers (1 = sequential)")
	interleave := flag.Bool("interleave", true, "latency: alternate targets request by request (false: one target after the other)")
	rounds := flag.Int("rounds", 1, "repeat the whole sequence; throughput/connrate report the median round, latency pools samples")
	jsonOut := flag.String("json", "", "also append JSON lines to this file")
	mdOut := flag.String("md", "", "also write the markdown table to this file")
	freePorts := flag.Int("free-ports", 0, "print this many free 127.0.0.1 TCP ports and exit (helper for the script)")
	flag.DurationVar(&ioTimeout, "timeout", 30*time.Second, "per-operation I/O deadline")
	flag.Parse()

	if *freePorts > 0 {
		printFreePorts(*freePorts)
		return
	}
	var targets []target
	if *direct {
		targets = append(targets, target{Name: "direct"})
	}
	targets = append(targets, proxies...)
	if len(targets) == 0 {
		fatal("nothing to measure: give -proxy and/or -direct")
	}
	want := map[string]bool{}
	for _, t := range strings.Split(*tests, ",") {
		switch t = strings.TrimSpace(t); t {
		case "throughput", "connrate", "latency":
			want[t] = true
		case "":
		default:
			fatal("unknown test %q", t)
		}
	}

	var err error
	if upTCP, err = serveRaw(); err != nil {
		fatal("raw upstream: %v", err)
	}
	var httpAddrs []string
	for _, t := range targets {
		u, err := serveHTTP()
		if err != nil {
			fatal("http upstream: %v", err)
		}
		upHTTP[t.Name] = u
		httpAddrs = append(httpAddrs, u.addr)
	}

	var jf *os.File
	if *jsonOut != "" {
		if jf, err = os.OpenFile(*jsonOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			fatal("%v", err)
		}
		defer jf.Close()
	}
	emit := func(r result) {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		if jf != nil {
			jf.Write(append(b, '\n'))
		}
	}
	fmt.Fprintf(os.Stderr, "# upstreams: raw %s, http %s; %d CPUs, GOMAXPROCS %d\n", upTCP, strings.Join(httpAddrs, " "), runtime.NumCPU(), runtime.GOMAXPROCS(0))

	// Every target gets a quick probe first so a broken proxy is reported
	// once and skipped instead of timing out through every test.
	alive := map[string]string{}
	for _, t := range targets {
		if err := probe(t); err != nil {
			alive[t.Name] = err.Error()
			fmt.Fprintf(os.Stderr, "# %s: probe failed, skipping: %v\n", t.Name, err)
		}
	}

	tp := map[string][]result{} // key target|mode
	cr := map[string][]result{}
	lat := map[string][]time.Duration{}
	latInfo := map[string]*result{}
	for round := 0; round < *rounds; round++ {
		if *rounds > 1 {
			fmt.Fprintf(os.Stderr, "# round %d/%d\n", round+1, *rounds)
		}
		if want["throughput"] {
			modes := []string{"down"}
			if *up {
				modes = append(modes, "up")
			}
			for _, m := range modes {
				for _, t := range targets {
					if alive[t.Name] != "" {
						continue
					}
					r := throughput(t, m, *nbytes)
					fmt.Fprintf(os.Stderr, "# throughput %-5s %-12s %8.1f MB/s\n", m, t.Name, r.MBs)
					tp[t.Name+"|"+m] = append(tp[t.Name+"|"+m], r)
				}
			}
		}
		if want["connrate"] {
			for _, t := range targets {
				if alive[t.Name] != "" {
					continue
				}
				r := connrate(t, *conc, *dur)
				fmt.Fprintf(os.Stderr, "# connrate %-12s %8.0f tunnels/s (%d errors)\n", t.Name, r.TunnelsS, r.Errors)
				cr[t.Name] = append(cr[t.Name], r)
			}
		}
		if want["latency"] {
			for _, m := range latModes {
				var ts []target
				for _, t := range targets {
					if alive[t.Name] != "" {
						continue
					}
					if t.Proxy == "" && (m == "connect-new" || m == "connect-ka") {
						continue // direct baseline is fwd-new / fwd-ka
					}
					ts = append(ts, t)
				}
				var out []latOut
				if *interleave {
					out = latency(ts, m, *latN, *latWarm, *latConc)
				} else {
					for _, t := range ts {
						out = append(out, latency([]target{t}, m, *latN, *latWarm, *latConc)...)
					}
				}
				for i, t := range ts {
					k := t.Name + "|" + m
					s, info := out[i].samples, out[i].r
					lat[k] = append(lat[k], s...)
					if latInfo[k] == nil {
						latInfo[k] = &info
					} else {
						latInfo[k].Conns += info.Conns
						latInfo[k].Retries += info.Retries
						latInfo[k].UpConns += info.UpConns
						latInfo[k].Errors += info.Errors
						if latInfo[k].FirstErr == "" {
							latInfo[k].FirstErr = info.FirstErr
						}
					}
				}
			}
		}
	}

	// Results, in target order.
	var all []result
	for _, t := range targets {
		if e := alive[t.Name]; e != "" {
			r := result{Target: t.Name, Metric: "probe", Skipped: true, Errors: 1, FirstErr: e}
			emit(r)
			all = append(all, r)
		}
	}
	for _, m := range []string{"down", "up"} {
		for _, t := range targets {
			if rs := tp[t.Name+"|"+m]; len(rs) > 0 {
				r := median(rs, func(r result) float64 { return r.MBs })
				emit(r)
				all = append(all, r)
			}
		}
	}
	for _, t := range targets {
		if rs := cr[t.Name]; len(rs) > 0 {
			r := median(rs, func(r result) float64 { return r.TunnelsS })
			emit(r)
			all = append(all, r)
		}
	}
	base := func(m string) string {
		if strings.HasSuffix(m, "-new") {
			return "direct|fwd-new"
		}
		return "direct|fwd-ka"
	}
	for _, m := range latModes {
		for _, t := range targets {
			k := t.Name + "|" + m
			info := latInfo[k]
			if info == nil {
				continue
			}
			r := *info
			s := lat[k]
			r.N = len(s)
			if len(s) > 0 {
				slices.Sort(s)
				r.P50us = us(pct(s, 50))
				r.P99us = us(pct(s, 99))
				var sum time.Duration
				for _, d := range s {
					sum += d
				}
				r.MeanUs = us(sum / time.Duration(len(s)))
				if b := lat[base(m)]; t.Proxy != "" && len(b) > 0 {
					slices.Sort(b)
					a50, a99 := us(pct(s, 50)-pct(b, 50)), us(pct(s, 99)-pct(b, 99))
					r.AddP50us, r.AddP99us = &a50, &a99
				}
			}
			emit(r)
			all = append(all, r)
		}
	}

	md := table(targets, all)
	fmt.Print("\n" + md)
	if *mdOut != "" {
		if err := os.WriteFile(*mdOut, []byte(md), 0o644); err != nil {
			fatal("%v", err)
		}
	}
}

var latModes = []string{"fwd-new", "fwd-ka", "connect-new", "connect-ka"}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench/egress: "+f+"\n", a...)
	os.Exit(1)
}

func us(d time.Duration) float64 { return math.Round(float64(d.Nanoseconds())/100) / 10 }

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func median(rs []result, key func(result) float64) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch ka, kb := key(a), key(b); {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	r := s[len(s)/2]
	for _, x := range rs {
		if x.FirstErr != "" && r.FirstErr == "" {
			r.FirstErr = x.FirstErr
		}
	}
	return r
}

func printFreePorts(n int) {
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fatal("%v", err)
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
}

// ---- upstreams ----

var zeros = make([]byte, 256<<10)

// serveRaw runs the raw TCP upstream. Protocol, one command line per
// connection: "D <n>\n" → it writes n bytes; "U <n>\n" → it reads n bytes and
// answers "K"; "P\n" → it answers "P". Then it waits for the client's EOF and
// closes, so the client side closes first.
func serveRaw() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go rawConn(c)
		}
	}()
	return l.Addr().String(), nil
}

func rawConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, _ := strconv.ParseInt(arg, 10, 64)
	switch cmd {
	case "D":
		for n > 0 {
			k := min(n, int64(len(zeros)))
			if _, err := c.Write(zeros[:k]); err != nil {
				return
			}
			n -= k
		}
	case "U":
		if _, err := io.CopyN(io.Discard, br, n); err != nil {
			return
		}
		c.Write([]byte("K"))
	case "P":
		c.Write([]byte("P"))
	default:
		return
	}
	io.Copy(io.Discard, br)
}

// httpUpstream is a plain HTTP/1.1 server; conns counts the connections it
// accepted, which shows whether a proxy pools upstream connections.
type httpUpstream struct {
	addr  string
	conns atomic.Int64
}

var httpBody = []byte("hello from the clawhold egress bench upstream\n")

func serveHTTP() (*httpUpstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &httpUpstream{addr: l.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(httpBody)))
			w.Write(httpBody)
		}),
		IdleTimeout: 5 * time.Minute,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				u.conns.Add(1)
			}
		},
	}
	go srv.Serve(l)
	return u, nil
}

// ---- client side ----

func dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c, nil
}

// readHead reads a status line and headers, returning the status code.
func readHead(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, fmt.Errorf("reading proxy reply: %w", err)
	}
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) {
		return 0, fmt.Errorf("bad proxy reply %q", line)
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, fmt.Errorf("bad proxy reply %q", line)
	}
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("reading proxy reply headers: %w", err)
		}
		if len(bytes.TrimRight(l, "\r\n")) == 0 {
			return code, nil
		}
	}
}

// open returns a connection to dst: directly, or through a CONNECT tunnel.
func open(t target, dst string, bufSize int) (net.Conn, *bufio.Reader, error) {
	if t.Proxy == "" {
		c, err := dial(dst)
		if err != nil {
			return nil, nil, err
		}
		return c, bufio.NewReaderSize(c, bufSize), nil
	}
	c, err := dial(t.Proxy)
	if err != nil {
		return nil, nil, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", dst, dst); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, bufSize)
	code, err := readHead(br)
	if err == nil && code != 200 {
		err = fmt.Errorf("CONNECT %s: proxy answered %d", dst, code)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, br, nil
}

func probe(t target) error {
	c, br, err := open(t, upTCP, 4096)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("P\n")); err != nil {
		return err
	}
	b, err := br.ReadByte()
	if err != nil || b != 'P' {
		return fmt.Errorf("tunnel ping: %v %q", err, b)
	}
	if t.Proxy != "" {
		// Absolute-URI forwarding too.
		out := latency([]target{t}, "fwd-new", 1, 0, 1)
		if len(out[0].samples) != 1 {
			return fmt.Errorf("GET via proxy: %s", out[0].r.FirstErr)
		}
	}
	return nil
}

func throughput(t target, mode string, n int64) result {
	r := result{Target: t.Name, Metric: "throughput", Mode: mode, Bytes: n}
	fail := func(err error) result {
		r.Errors, r.FirstErr = 1, err.Error()
		return r
	}
	c, br, err := open(t, upTCP, 256<<10)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	// Allow at least 10 MB/s before the deadline fires.
	c.SetDeadline(time.Now().Add(ioTimeout + time.Duration(n/10e6)*time.Second))
	buf := make([]byte, 256<<10)
	start := time.Now()
	switch mode {
	case "down":
		if _, err := fmt.Fprintf(c, "D %d\n", n); err != nil {
			return fail(err)
		}
		var got int64
		for got < n {
			k, err := br.Read(buf)
			got += int64(k)
			if err != nil && got < n {
				return fail(fmt.Errorf("after %d bytes: %w", got, err))
			}
		}
	case "up":
		if _, err := fmt.Fprintf(c, "U %d\n", n); err != nil {
			return fail(err)
		}
		for left := n; left > 0; {
			k, err := c.Write(buf[:min(left, int64(len(buf)))])
			left -= int64(k)
			if err != nil {
				return fail(err)
			}
		}
		if b, err := br.ReadByte(); err != nil || b != 'K' {
			return fail(fmt.Errorf("upload ack: %v", err))
		}
	}
	el := time.Since(start)
	r.Seconds = el.Seconds()
	r.MBs = math.Round(float64(n)/1e5/el.Seconds()) / 10
	return r
}

func connrate(t target, conc int, d time.Duration) result {
	r := result{Target: t.Name, Metric: "connrate", Conc: conc}
	var ok, nerr atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var samples []time.Duration
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := func() error {
					c, br, err := open(t, upTCP, 512)
					if err != nil {
						return err
					}
					defer c.Close()
					if _, err := c.Write([]byte("P\n")); err != nil {
						return err
					}
					if b, err := br.ReadByte(); err != nil || b != 'P' {
						return fmt.Errorf("tunnel ping: %v", err)
					}
					return nil
				}()
				if err != nil {
					nerr.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond) // don't spin on a refusing proxy
					continue
				}
				ok.Add(1)
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start) // includes the tail of in-flight tunnels
	r.Seconds = el.Seconds()
	r.Tunnels = ok.Load()
	r.TunnelsS = math.Round(float64(r.Tunnels)/el.Seconds()*10) / 10
	r.Errors = nerr.Load()
	if e, _ := firstErr.Load().(string); e != "" {
		r.FirstErr = e
	}
	slices.Sort(samples)
	r.P50us, r.P99us = us(pct(samples, 50)), us(pct(samples, 99))
	return r
}

type latOut struct {
	samples []time.Duration
	r       result
}

// latency measures n GET requests per target in mode, after warm unmeasured
// ones. Targets are interleaved request by request (each with its own
// connection), so background load on the shared box hits all of them alike.
func latency(ts []target, mode string, n, warm, workers int) []latOut {
	type per struct {
		mu                   sync.Mutex
		samples              []time.Duration
		conns, nerr, retries atomic.Int64
		firstErr             atomic.Value
		up0                  int64
	}
	ps := make([]*per, len(ts))
	for i, t := range ts {
		ps[i] = &per{up0: upHTTP[t.Name].conns.Load()}
	}
	keep := strings.HasSuffix(mode, "-ka")
	var next atomic.Int64
	total := int64(n + warm)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := make([]net.Conn, len(ts))
			brs := make([]*bufio.Reader, len(ts))
			mine := make([][]time.Duration, len(ts))
			defer func() {
				for _, c := range cs {
					if c != nil {
						c.Close()
					}
				}
			}()
			for {
				i := next.Add(1)
				if i > total {
					break
				}
				for j := range ts {
					// Rotate the order so no target always goes first.
					ti := (j + int(i)) % len(ts)
					t, p, up := ts[ti], ps[ti], upHTTP[ts[ti].Name].addr
					var reused bool
					try := func() error {
						reused = cs[ti] != nil
						if cs[ti] == nil {
							var c net.Conn
							var br *bufio.Reader
							var err error
							if mode == "fwd-new" || mode == "fwd-ka" {
								addr := up
								if t.Proxy != "" {
									addr = t.Proxy
								}
								if c, err = dial(addr); err != nil {
									return err
								}
								br = bufio.NewReaderSize(c, 4096)
							} else if c, br, err = open(t, up, 4096); err != nil {
								return err
							}
							cs[ti], brs[ti] = c, br
							p.conns.Add(1)
						}
						c, br := cs[ti], brs[ti]
						c.SetDeadline(time.Now().Add(ioTimeout))
						uri := "/bench"
						if t.Proxy != "" && strings.HasPrefix(mode, "fwd-") {
							uri = "http://" + up + "/bench"
						}
						conn := "keep-alive"
						if !keep {
							conn = "close"
						}
						if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: clawhold-egress-bench\r\nConnection: %s\r\n\r\n", uri, up, conn); err != nil {
							return err
						}
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							return err
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							return fmt.Errorf("GET via %s: status %s", mode, resp.Status)
						}
						if !keep || resp.Close {
							c.Close()
							cs[ti] = nil
						}
						return nil
					}
					drop := func() {
						if cs[ti] != nil {
							cs[ti].Close()
							cs[ti] = nil
						}
					}
					t0 := time.Now()
					err := try()
					if err != nil && reused {
						// The proxy closed an idle keep-alive connection without
						// saying so (tinyproxy serves one request per client
						// connection but drops the upstream's "Connection: close").
						// Retry once on a new connection, as HTTP clients do; the
						// time of the failed attempt stays in the sample.
						drop()
						p.retries.Add(1)
						err = try()
					}
					el := time.Since(t0)
					if err != nil {
						drop()
						if i > int64(warm) {
							p.nerr.Add(1)
							p.firstErr.CompareAndSwap(nil, err.Error())
						}
						continue
					}
					if i > int64(warm) {
						mine[ti] = append(mine[ti], el)
					}
				}
			}
			for ti, p := range ps {
				p.mu.Lock()
				p.samples = append(p.samples, mine[ti]...)
				p.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out := make([]latOut, len(ts))
	for i, t := range ts {
		p := ps[i]
		r := result{Target: t.Name, Metric: "latency", Mode: mode,
			Conns: p.conns.Load(), Retries: p.retries.Load(), Errors: p.nerr.Load(),
			UpConns: upHTTP[t.Name].conns.Load() - p.up0}
		if e, _ := p.firstErr.Load().(string); e != "" {
			r.FirstErr = e
		}
		out[i] = latOut{samples: p.samples, r: r}
	}
	return out
}

// ---- table ----

func table(targets []target, all []result) string {
	get := func(name, metric, mode string) *result {
		for i := range all {
			if all[i].Target == name && all[i].Metric == metric && all[i].Mode == mode {
				return &all[i]
			}
		}
		return nil
	}
	var b strings.Builder
	hdr := "| metric |"
	sep := "|---|"
	for _, t := range targets {
		hdr += " " + t.Name + " |"
		sep += "---:|"
	}
	b.WriteString(hdr + "\n" + sep + "\n")
	row := func(label string, cell func(t target) string) {
		line := "| " + label + " |"
		filled := false
		for _, t := range targets {
			c := cell(t)
			if c != "" {
				filled = true
			} else {
				c = "–"
			}
			line += " " + c + " |"
		}
		if filled {
			b.WriteString(line + "\n")
		}
	}
	errNote := func(r *result) string {
		if r.Errors > 0 {
			return fmt.Sprintf(" (%d err)", r.Errors)
		}
		return ""
	}
	for _, m := range []string{"down", "up"} {
		row("CONNECT throughput "+m+" (MB/s)", func(t target) string {
			if r := get(t.Name, "throughput", m); r != nil {
				if r.MBs == 0 {
					return "error"
				}
				return fmt.Sprintf("%.0f", r.MBs) + errNote(r)
			}
			return ""
		})
	}
	row("new tunnels/s", func(t target) string {
		if r := get(t.Name, "connrate", ""); r != nil {
			return fmt.Sprintf("%.0f", r.TunnelsS) + errNote(r)
		}
		return ""
	})
	row("tunnel setup+ping p50/p99 (µs)", func(t target) string {
		if r := get(t.Name, "connrate", ""); r != nil && r.Tunnels > 0 {
			return fmt.Sprintf("%.0f / %.0f", r.P50us, r.P99us)
		}
		return ""
	})
	labels := map[string]string{
		"fwd-new":     "GET absolute-URI, new conn",
		"fwd-ka":      "GET absolute-URI, keep-alive",
		"connect-new": "GET in CONNECT, new tunnel",
		"connect-ka":  "GET in CONNECT, one tunnel",
	}
	for _, m := range latModes {
		row(labels[m]+" p50/p99 (µs)", func(t target) string {
			if r := get(t.Name, "latency", m); r != nil && r.N > 0 {
				return fmt.Sprintf("%.0f / %.0f", r.P50us, r.P99us) + errNote(r)
			}
			if t.Proxy == "" && strings.HasPrefix(m, "connect-") {
				if r := get(t.Name, "latency", "fwd-"+strings.TrimPrefix(m, "connect-")); r != nil && r.N > 0 {
					return fmt.Sprintf("(%.0f / %.0f)", r.P50us, r.P99us)
				}
			}
			return ""
		})
		row(labels[m]+" added p50/p99 (µs)", func(t target) string {
			if r := get(t.Name, "latency", m); r != nil && r.AddP50us != nil {
				return fmt.Sprintf("%+.0f / %+.0f", *r.AddP50us, *r.AddP99us)
			}
			return ""
		})
		row(labels[m]+" TCP conns used (incl. warm-up)", func(t target) string {
			if r := get(t.Name, "latency", m); r != nil && r.N > 0 && strings.HasSuffix(m, "-ka") {
				if r.Retries > 0 {
					return fmt.Sprintf("%d (%d retried)", r.Conns, r.Retries)
				}
				return strconv.FormatInt(r.Conns, 10)
			}
			return ""
		})
		row(labels[m]+" upstream conns (incl. warm-up)", func(t target) string {
			if r := get(t.Name, "latency", m); r != nil && r.N > 0 && t.Proxy != "" {
				return strconv.FormatInt(r.UpConns, 10)
			}
			return ""
		})
	}
	var notes []string
	for _, r := range all {
		if r.FirstErr != "" {
			notes = append(notes, fmt.Sprintf("- %s %s %s: %d errors, first: %s", r.Target, r.Metric, r.Mode, r.Errors, r.FirstErr))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nErrors:\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}
