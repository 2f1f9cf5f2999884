package sandbox

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// listenTCP listens without MPTCP (which Landlock's TCP rules do not
// cover) and without keepalive probes.
func listenTCP(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, "tcp", addr)
}

// relay accepts on ln and joins every connection to a new connection to
// network/addr, until ln is closed. It is how traffic crosses the
// sandbox's network namespace: out to the egress proxy's unix socket, and
// in from the host's unix socket to the exposed port.
func relay(ctx context.Context, ln net.Listener, network, addr string) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		go func() {
			defer c.Close()
			up, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return
			}
			defer up.Close()
			join(c, up)
		}()
	}
}

type closeWriter interface{ CloseWrite() error }

// join copies both ways, passing each side's end of stream on as a
// half-close, until both directions are done.
func join(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go half(a, b)
	go half(b, a)
	wg.Wait()
}
