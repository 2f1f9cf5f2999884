package sandbox

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The escape suite runs this test binary inside the sandbox as a probe:
// TestMain sees probeEnv and runs probe(os.Args[1:]) instead of the tests.
// Each attempt prints what happened and exits
//
//	0  the attempt was blocked (what the test wants)
//	1  the attempt succeeded: an escape
//	2  the probe itself failed
const probeEnv = "CLAWHOLD_SANDBOX_PROBE"

func probe(args []string) int {
	if len(args) == 0 {
		fmt.Println("probe: no attempt named")
		return 2
	}
	blocked := func(what string, err error) int {
		if err == nil {
			fmt.Printf("ESCAPE: %s succeeded\n", what)
			return 1
		}
		fmt.Printf("blocked: %s: %v\n", what, err)
		return 0
	}
	arg := func(i int) string {
		if len(args) > i {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "read":
		_, err := os.ReadFile(arg(1))
		return blocked("read "+arg(1), err)
	case "read-fd": // a descriptor the host leaked without O_CLOEXEC
		fd, _ := strconv.Atoi(arg(1))
		buf := make([]byte, 64)
		_, err := syscall.Pread(fd, buf, 0)
		return blocked("read the host's descriptor "+arg(1), err)
	case "write":
		err := os.WriteFile(arg(1), []byte("escape"), 0o644)
		return blocked("write "+arg(1), err)
	case "write-ok": // positive control
		if err := os.WriteFile(arg(1), []byte("inside"), 0o644); err != nil {
			fmt.Println("probe: write failed:", err)
			return 2
		}
		return 0
	case "connect":
		c, err := net.DialTimeout("tcp", arg(1), 2*time.Second)
		if c != nil {
			c.Close()
		}
		return blocked("connect "+arg(1), err)
	case "read-ok": // positive control: print a file
		b, err := os.ReadFile(arg(1))
		if err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		fmt.Printf("read:%s\n", b)
		return 0
	case "link-ok": // positive control: hard link from a subdirectory to its parent (OpenClaw publishes files so)
		sub := filepath.Join(arg(1), "staging")
		if err := os.MkdirAll(sub, 0o700); err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		if err := os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o600); err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		if err := os.Link(filepath.Join(sub, "f"), filepath.Join(arg(1), "published")); err != nil {
			fmt.Println("probe: link across directories:", err)
			return 2
		}
		return 0
	case "exposed-port": // listen on the exposed port like a gateway; the command itself must not connect to it
		ln, err := net.Listen("tcp", "127.0.0.1:"+arg(1))
		if err != nil {
			fmt.Println("probe: listen:", err)
			return 2
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+arg(1), 2*time.Second)
		if c != nil {
			c.Close()
		}
		code := blocked("connect to the exposed port 127.0.0.1:"+arg(1), err)
		// A child process (a tool the agent starts) is no better off.
		exe, _ := os.Executable()
		out, _ := exec.Command(exe, "connect", "localhost:"+arg(1)).CombinedOutput()
		fmt.Print("child: ", string(out))
		if !strings.HasPrefix(string(out), "blocked") {
			code = 1
		}
		fmt.Printf("serving code=%d\n", code)
		for {
			c, err := ln.Accept()
			if err != nil {
				return 2
			}
			fmt.Fprintf(c, "served code=%d\n", code)
			c.Close()
		}
	case "proxy-get": // through HTTP_PROXY: blocked means the proxy refused
		u, _ := url.Parse(os.Getenv("HTTP_PROXY"))
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		resp, err := client.Get(arg(1))
		if err != nil {
			return blocked("GET "+arg(1), err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusForbidden {
			fmt.Printf("blocked: GET %s: %s %s\n", arg(1), resp.Status, body)
			return 0
		}
		fmt.Printf("ESCAPE: GET %s: %s %s\n", arg(1), resp.Status, body)
		return 1
	case "proxy-get-ok": // positive control: allowed through the proxy
		u, _ := url.Parse(os.Getenv("HTTP_PROXY"))
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		resp, err := client.Get(arg(1))
		if err != nil || resp.StatusCode != http.StatusOK {
			fmt.Println("probe: GET through the proxy failed:", err, resp)
			return 2
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("ok: %s\n", body)
		return 0
	case "ptrace":
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = []string{probeEnv + "=1"}
		cmd.Args = []string{"probe", "sleep"}
		if err := cmd.Start(); err != nil {
			fmt.Println("probe: starting a sibling:", err)
			return 2
		}
		defer cmd.Process.Kill()
		runtime.LockOSThread()
		err := unix.PtraceAttach(cmd.Process.Pid)
		return blocked("ptrace a sibling", err)
	case "ptrace-init":
		runtime.LockOSThread()
		return blocked("ptrace pid 1", unix.PtraceAttach(1))
	case "sleep":
		time.Sleep(time.Minute)
		return 0
	case "mount":
		os.MkdirAll("/tmp/m", 0o755)
		return blocked("mount tmpfs", unix.Mount("tmpfs", "/tmp/m", "tmpfs", 0, ""))
	case "unshare-user":
		runtime.LockOSThread()
		return blocked("unshare(CLONE_NEWUSER)", unix.Unshare(unix.CLONE_NEWUSER))
	case "unshare-net":
		runtime.LockOSThread()
		return blocked("unshare(CLONE_NEWNET)", unix.Unshare(unix.CLONE_NEWNET))
	case "clone-userns": // through exec's clone, as a shell would
		cmd := exec.Command("/proc/self/exe", "sleep")
		cmd.Env = []string{probeEnv + "=1"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
		err := cmd.Start()
		if err == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return blocked("clone(CLONE_NEWUSER)", err)
	case "setns":
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0)
		if err != nil {
			fmt.Println("probe: open /proc/self/ns/net:", err)
			return 2
		}
		runtime.LockOSThread()
		return blocked("setns", unix.Setns(fd, 0))
	case "raw-socket":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		return blocked("socket(AF_INET, SOCK_RAW)", err)
	case "packet-socket":
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err == nil {
			unix.Close(fd)
		}
		return blocked("socket(AF_PACKET)", err)
	case "fork-bomb":
		n, err := forkBomb()
		fmt.Printf("started %d processes before: %v\n", n, err)
		if err == nil {
			return 1
		}
		return 0
	case "memory-bomb":
		var hoard [][]byte
		for i := 0; i < 1024; i++ { // up to 1 GiB, touched page by page
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			hoard = append(hoard, b)
		}
		fmt.Printf("ESCAPE: allocated %d MiB\n", len(hoard))
		return 1
	case "cpu-hog":
		secs, _ := strconv.Atoi(arg(1))
		start := time.Now()
		var ru0 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		done := make(chan struct{})
		for i := 0; i < 2; i++ {
			go func() {
				x := 0
				for {
					select {
					case <-done:
						return
					default:
						x++
					}
				}
			}()
		}
		time.Sleep(time.Duration(secs) * time.Second)
		close(done)
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		cpu := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) - time.Duration(ru0.Utime.Nano()+ru0.Stime.Nano())
		fmt.Printf("cpu=%d wall=%d\n", cpu.Microseconds(), time.Since(start).Microseconds())
		return 0
	case "caps":
		b, _ := os.ReadFile("/proc/self/status")
		fmt.Print(string(b))
		return 0
	}
	fmt.Println("probe: unknown attempt", args[0])
	return 2
}

// forkBomb starts sleeping children until the kernel refuses, up to 5000.
func forkBomb() (int, error) {
	var procs []*os.Process
	defer func() {
		for _, p := range procs {
			p.Kill()
			p.Wait()
		}
	}()
	for i := 0; i < 5000; i++ {
		p, err := os.StartProcess("/proc/self/exe", []string{"probe", "sleep"}, &os.ProcAttr{Env: []string{probeEnv + "=1"}})
		if err != nil {
			return i, err
		}
		procs = append(procs, p)
	}
	return len(procs), nil
}
