package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The live checks look at the running host rather than the files: which
// sockets listen where (/proc/net), which process owns each one
// (/proc/<pid>/fd), and whether the gateway's port answers from a
// non-loopback address. They run only with Target.Live.
//
// The gateway is recognised two ways: a process whose command line says
// it is OpenClaw's gateway (a node process running "openclaw ... gateway",
// or one that renamed itself "openclaw-gateway", as OpenClaw 2026.9.6 does
// once started), and whatever listens on the configured gateway.port.

const (
	ruleLiveGatewayExposed  = "live.gateway_non_loopback"
	ruleLiveGatewayRoot     = "live.gateway_root"
	ruleLiveGatewayTreePort = "live.gateway_tree_listener"
	ruleLiveGatewayMDNS     = "live.gateway_mdns"

	// defaultGatewayPort is OpenClaw's gateway.port default.
	defaultGatewayPort = 18789
	// mdnsPort is multicast DNS (OpenClaw's Bonjour discovery).
	mdnsPort = 5353
	// dialTimeout bounds each probe of the gateway port from a
	// non-loopback address; the probe is local, so it is fast or nothing.
	dialTimeout = 500 * time.Millisecond
)

// liveChecks returns the live checks.
func liveChecks() []check {
	return []check{{
		name: "live",
		rules: []Rule{
			{ID: ruleLiveGatewayExposed, Area: Deployment, Severity: Warn,
				Title: "The OpenClaw gateway listens on a non-loopback address (critical when it answers HTTP there)",
				Remediation: "Set gateway.bind to \"loopback\" and reach the gateway through an authenticating reverse proxy " +
					"or `tailscale serve`; if it must listen on the network, firewall the port to the hosts that need it."},
			{ID: ruleLiveGatewayRoot, Area: Deployment, Severity: Critical,
				Title: "The OpenClaw gateway runs as root",
				Remediation: "Run the gateway as a dedicated unprivileged user (systemd User=, a container USER, or " +
					"`clawhold up`); a root gateway hands every tool and plugin the whole host."},
			{ID: ruleLiveGatewayTreePort, Area: Deployment, Severity: Warn,
				Title: "A process started by the OpenClaw gateway listens on a non-loopback address",
				Remediation: "Bind the helper to 127.0.0.1 (for a browser, its remote debugging (CDP) address and " +
					"browser.*.cdpUrl), or firewall the port; these ports usually have no authentication of their own."},
			{ID: ruleLiveGatewayMDNS, Area: Deployment, Severity: Info,
				Title: "The OpenClaw gateway advertises itself on the local network (mDNS)",
				Remediation: "Set discovery.mdns.mode to \"off\" unless clients on this network discover the gateway " +
					"through Bonjour."},
		},
		run: runLive,
	}}
}

func runLive(ctx context.Context, t *Target, r *results) {
	if !t.Live {
		return
	}
	h, err := scanHost("/proc")
	if err != nil {
		r.fail("reading /proc: %v", err)
		return
	}
	if h.hiddenFDs > 0 && h.unowned() > 0 {
		r.fail("not root: %d listening sockets belong to processes whose file descriptors could not be read "+
			"(%d processes hidden); run `clawhold audit --live` as root to attribute them", h.unowned(), h.hiddenFDs)
	}

	port := gatewayPort(t)
	gws := h.gateways(port)
	reported := map[uint64]bool{} // socket inodes already reported
	for _, gw := range gws {
		p := h.procs[gw]
		if p.uid == 0 {
			r.add(ruleLiveGatewayRoot, procLoc(gw),
				fmt.Sprintf("gateway process %d (%s) runs with uid 0", gw, p.name()))
		}
		tree := h.tree(gw)
		for _, s := range h.sockets {
			owner, ok := h.owner[s.inode]
			if !ok || !slices.Contains(tree, owner) || reported[s.inode] {
				continue
			}
			switch {
			case s.proto == "udp" && s.port == mdnsPort:
				reported[s.inode] = true
				r.add(ruleLiveGatewayMDNS, procLoc(owner),
					fmt.Sprintf("process %d (%s) of the gateway's tree has UDP %s open", owner, h.procs[owner].name(), s.addr()))
			case s.proto != "tcp" || s.ip.IsLoopback():
			case owner == gw || s.port == port:
				reported[s.inode] = true
				reportExposed(ctx, t, r, s, fmt.Sprintf("gateway process %d (%s)", owner, h.procs[owner].name()))
			default:
				reported[s.inode] = true
				r.add(ruleLiveGatewayTreePort, procLoc(owner),
					fmt.Sprintf("process %d (%s), started by gateway process %d, listens on TCP %s",
						owner, h.procs[owner].name(), gw, s.addr()))
			}
		}
	}
	// A listener on the configured port whose process is hidden (not
	// root) is still the gateway's port.
	for _, s := range h.sockets {
		if s.proto != "tcp" || s.port != port || s.ip.IsLoopback() || reported[s.inode] {
			continue
		}
		if _, ok := h.owner[s.inode]; ok {
			continue // someone else's process; it would have been a gateway above
		}
		reported[s.inode] = true
		reportExposed(ctx, t, r, s, "an unidentified process (its file descriptors are not readable)")
	}
}

// reportExposed reports a gateway listener beyond loopback, critical when
// the port answers HTTP from one of this host's non-loopback addresses.
func reportExposed(ctx context.Context, t *Target, r *results, s socket, who string) {
	ev := fmt.Sprintf("%s listens on TCP %s", who, s.addr())
	if bind := t.Config.String("gateway.bind"); bind != "" {
		ev += fmt.Sprintf(" (gateway.bind is %q)", bind)
	}
	f := r.add(ruleLiveGatewayExposed, t.Config.Loc("gateway.bind"), ev)
	if from, ok := answersHTTP(ctx, s); ok {
		f.Severity = Critical
		f.Evidence += "; it answers HTTP at " + from
	}
}

// gatewayPort is the port the target's gateway is configured to use.
func gatewayPort(t *Target) int {
	if v := t.Env["OPENCLAW_GATEWAY_PORT"]; v != "" {
		if p, err := strconv.Atoi(v); err == nil && p > 0 && p < 1<<16 {
			return p
		}
	}
	if n, ok := t.Config.Number("gateway.port"); ok && n > 0 && n < 1<<16 {
		return int(n)
	}
	return defaultGatewayPort
}

func procLoc(pid int) Location { return Location{File: fmt.Sprintf("/proc/%d", pid)} }

// answersHTTP dials s's port on each of this host's non-loopback addresses
// that s listens on, and reports the first one that answers an HTTP
// request.
func answersHTTP(ctx context.Context, s socket) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 4*dialTimeout) // a host with many addresses
	defer cancel()
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return "", false
	}
	for _, a := range ifaces {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() || !s.covers(ipn.IP) {
			continue
		}
		addr := net.JoinHostPort(ipn.IP.String(), strconv.Itoa(s.port))
		if ctx.Err() != nil {
			break
		}
		if speaksHTTP(ctx, addr) {
			return addr, true
		}
	}
	return "", false
}

// speaksHTTP sends a bare HTTP request to addr and reports whether the
// answer is an HTTP status line. No proxy, no redirects, nothing sent but
// the request line and Host.
func speaksHTTP(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: dialTimeout}
	ctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return false
	}
	b := make([]byte, 5)
	n, _ := readFull(c, b)
	return string(b[:n]) == "HTTP/"
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// socket is a TCP listener or an unconnected UDP socket from /proc/net.
type socket struct {
	proto string // "tcp" or "udp"
	ip    net.IP
	port  int
	inode uint64
}

func (s socket) addr() string { return net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port)) }

// covers reports whether a socket bound to s.ip accepts connections to ip.
func (s socket) covers(ip net.IP) bool {
	switch {
	case s.ip.Equal(net.IPv4zero):
		return ip.To4() != nil
	case s.ip.Equal(net.IPv6unspecified):
		return true // dual-stack unless IPV6_V6ONLY; a failed dial costs little
	}
	return s.ip.Equal(ip)
}

// proc is one process as /proc shows it.
type proc struct {
	pid, ppid, uid int
	argv           []string
	exe            string
}

// name is the process's command line, shortened for evidence. Arguments
// are left out: a command line may carry a token.
func (p proc) name() string {
	if len(p.argv) == 0 {
		return "?"
	}
	n := filepath.Base(p.argv[0])
	for _, a := range p.argv[1:] {
		if strings.Contains(a, "openclaw") {
			return n + " " + filepath.Base(a)
		}
	}
	return n
}

// isGateway reports whether the command line is OpenClaw's gateway: the
// renamed process ("openclaw-gateway") or node running openclaw's CLI
// with the gateway command.
func (p proc) isGateway() bool {
	if len(p.argv) == 0 {
		return false
	}
	if filepath.Base(p.argv[0]) == "openclaw-gateway" {
		return true
	}
	exe := filepath.Base(p.exe)
	if exe == "" || exe == "." {
		exe = filepath.Base(p.argv[0])
	}
	if !strings.HasPrefix(exe, "node") {
		return false
	}
	var claw, gw bool
	for _, a := range p.argv[1:] {
		claw = claw || strings.Contains(a, "openclaw")
		gw = gw || a == "gateway"
	}
	return claw && gw
}

// host is a snapshot of the listening sockets and processes.
type host struct {
	sockets []socket
	procs   map[int]proc
	owner   map[uint64]int // socket inode → pid
	// hiddenFDs counts processes whose fds could not be read.
	hiddenFDs int
}

// scanHost reads the sockets and processes under root (normally /proc).
func scanHost(root string) (*host, error) {
	h := &host{procs: map[int]proc{}, owner: map[uint64]int{}}
	for _, f := range []struct{ file, proto string }{
		{"net/tcp", "tcp"}, {"net/tcp6", "tcp"}, {"net/udp", "udp"}, {"net/udp6", "udp"},
	} {
		ss, err := readSockets(filepath.Join(root, f.file), f.proto)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6 in this kernel or namespace
		}
		if err != nil {
			return nil, err
		}
		h.sockets = append(h.sockets, ss...)
	}
	want := map[uint64]bool{}
	for _, s := range h.sockets {
		want[s.inode] = true
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProc(root, pid)
		if !ok {
			continue // exited meanwhile
		}
		h.procs[pid] = p
		fds, err := os.ReadDir(filepath.Join(root, e.Name(), "fd"))
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				h.hiddenFDs++
			}
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(root, e.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64)
			if err == nil && want[ino] {
				if _, seen := h.owner[ino]; !seen {
					h.owner[ino] = pid // a socket shared by a fork belongs to the first (the parent, usually)
				}
			}
		}
	}
	return h, nil
}

// unowned counts sockets no visible process owns.
func (h *host) unowned() int {
	n := 0
	for _, s := range h.sockets {
		if _, ok := h.owner[s.inode]; !ok {
			n++
		}
	}
	return n
}

// gateways returns the gateway processes, sorted: the topmost process of
// each gateway command line (a gateway's own children are part of its
// tree, not gateways of their own), and the owner of any listener on port.
func (h *host) gateways(port int) []int {
	is := map[int]bool{}
	for pid, p := range h.procs {
		if p.isGateway() {
			is[pid] = true
		}
	}
	for _, s := range h.sockets {
		if s.proto == "tcp" && s.port == port {
			if pid, ok := h.owner[s.inode]; ok {
				is[pid] = true
			}
		}
	}
	var out []int
	for pid := range is {
		top := true
		for a := h.procs[pid].ppid; a > 1; a = h.procs[a].ppid {
			if is[a] {
				top = false
				break
			}
			if _, ok := h.procs[a]; !ok {
				break
			}
		}
		if top {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// tree returns pid and its descendants.
func (h *host) tree(pid int) []int {
	children := map[int][]int{}
	for p, pr := range h.procs {
		children[pr.ppid] = append(children[pr.ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// readProc reads a process's command line, parent and effective uid.
func readProc(root string, pid int) (proc, bool) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	p := proc{pid: pid, uid: -1}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "PPid" && len(f) > 0:
			p.ppid, _ = strconv.Atoi(f[0])
		case k == "Uid" && len(f) > 1:
			p.uid, _ = strconv.Atoi(f[1]) // effective
		}
	}
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		// A renamed process (process.title) pads argv with NULs.
		for _, a := range strings.Split(string(cmd), "\x00") {
			if a != "" {
				p.argv = append(p.argv, a)
			}
		}
	}
	p.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	return p, true
}

// readSockets reads the TCP listeners (state 0A) or unconnected UDP
// sockets (state 07) of a /proc/net/{tcp,tcp6,udp,udp6} file.
func readSockets(path, proto string) ([]socket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []socket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		s, ok := parseSocketLine(sc.Text(), proto)
		if ok {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// parseSocketLine parses one line of /proc/net/tcp and friends:
// "sl local_address rem_address st ... uid timeout inode ...".
func parseSocketLine(line, proto string) (socket, bool) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return socket{}, false
	}
	want := "0A" // TCP_LISTEN
	if proto == "udp" {
		want = "07" // TCP_CLOSE: an unconnected (listening) UDP socket
	}
	if f[3] != want {
		return socket{}, false
	}
	hexIP, hexPort, ok := strings.Cut(f[1], ":")
	if !ok {
		return socket{}, false
	}
	ip, ok := parseProcIP(hexIP)
	port, err := strconv.ParseUint(hexPort, 16, 16)
	ino, err2 := strconv.ParseUint(f[9], 10, 64)
	if !ok || err != nil || err2 != nil || ino == 0 {
		return socket{}, false
	}
	return socket{proto: proto, ip: ip, port: int(port), inode: ino}, true
}

// parseProcIP decodes /proc/net's address: 32-bit words in host byte
// order (little-endian on every platform clawhold runs on).
func parseProcIP(s string) (net.IP, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, false
	}
	ip := make(net.IP, len(b))
	for w := 0; w < len(b); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = b[w+3], b[w+2], b[w+1], b[w]
	}
	if v4 := ip.To4(); v4 != nil && len(b) == 16 && !ip.Equal(net.IPv6unspecified) {
		return v4, true // ::ffff:a.b.c.d
	}
	return ip, true
}
