package egress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// BenchmarkTunnelSetup measures one whole short tunnel through the proxy:
// connect, CONNECT, one byte each way, close (what bench/egress.sh's
// connrate does with 64 clients). Run with -cpuprofile to see per-tunnel
// costs.
func BenchmarkTunnelSetup(b *testing.B) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}()
		}
	}()
	upAddr := netip.MustParseAddrPort(up.Addr().String())
	p, err := New(Config{Policies: map[string]Policy{"p": {Rules: []Rule{{Action: Allow, Host: "127.0.0.1", CIDRs: loopback8}}}}, Events: func(Event) {}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx, ln, Client{Policy: "p"})
	target := upAddr.String()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 1)
		for pb.Next() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				b.Errorf("CONNECT: %v", err)
				c.Close()
				return
			}
			c.Write([]byte{1})
			if _, err := io.ReadFull(br, buf); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
}
