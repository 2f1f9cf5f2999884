package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const copyBufSize = 32 << 10

// bufPool recycles copy buffers: two per tunnel, so that thousands of short
// tunnels a second do not each allocate (and the GC reclaim) 64 KiB.
type bufPool struct{ p sync.Pool }

func (bp *bufPool) get() *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, copyBufSize)
	return &b
}

func (bp *bufPool) put(b *[]byte) { bp.p.Put(b) }

// copyStream copies src to dst with a buffer from bufs, waiting on lim (if
// any) before each write and recording activity (if any). It returns the
// bytes written.
func copyStream(ctx context.Context, dst io.Writer, src io.Reader, lim *rate.Limiter, activity *atomic.Int64, bufs *bufPool) (int64, error) {
	pb := bufs.get()
	defer bufs.put(pb)
	buf := *pb
	if lim != nil {
		buf = buf[:min(len(buf), lim.Burst())]
	}
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if activity != nil {
				activity.Store(time.Now().UnixNano())
			}
			if lim != nil {
				if err := lim.WaitN(ctx, n); err != nil {
					return total, err
				}
			}
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// countingReader counts and rate-limits a request body.
type countingReader struct {
	r        io.Reader
	lim      *rate.Limiter
	ctx      context.Context
	activity *atomic.Int64 // may be nil
	n        atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	if c.lim != nil && len(b) > c.lim.Burst() {
		b = b[:c.lim.Burst()]
	}
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	if n > 0 && c.activity != nil {
		c.activity.Store(time.Now().UnixNano())
	}
	if n > 0 && c.lim != nil {
		if werr := c.lim.WaitN(c.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// tunnel copies both ways between client and upstream, half-closing each
// side's write half when the other side finishes, until both are done, ctx
// ends or nothing moves for idle (0: no idle limit).
func tunnel(ctx context.Context, client, upstream net.Conn, lim *rate.Limiter, idle time.Duration, bufs *bufPool) (up, down int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var activity atomic.Int64
	activity.Store(time.Now().UnixNano())

	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()
	idled := watchIdle(ctx, idle, &activity, cancel)

	var wg sync.WaitGroup
	var upErr, downErr error
	half := func(dst, src net.Conn, n *int64, errp *error) {
		defer wg.Done()
		defer func() {
			if v := recover(); v != nil {
				*errp = fmt.Errorf("panic: %v", v)
				cancel()
			}
		}()
		*n, *errp = copyStream(ctx, dst, src, lim, &activity, bufs)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && *errp == nil {
			cw.CloseWrite()
		} else {
			cancel() // no half-close possible, or an error: end both directions
		}
	}
	wg.Add(2)
	go half(upstream, client, &up, &upErr)
	go half(client, upstream, &down, &downErr)
	wg.Wait()

	if idled.Load() {
		return up, down, fmt.Errorf("idle for %s (limits.idle_timeout)", idle)
	}
	if ctx.Err() != nil && context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		return up, down, fmt.Errorf("tunnel ended: %w", context.Cause(ctx))
	}
	if upErr != nil && !isClosed(upErr) {
		return up, down, upErr
	}
	if downErr != nil && !isClosed(downErr) {
		return up, down, downErr
	}
	return up, down, nil
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled)
}

// watchIdle calls cancel once activity (UnixNano of the last byte moved) is
// idle old, and reports through the returned flag that it did. It stops
// when ctx ends. idle 0 means never.
func watchIdle(ctx context.Context, idle time.Duration, activity *atomic.Int64, cancel context.CancelFunc) *atomic.Bool {
	var idled atomic.Bool
	if idle <= 0 {
		return &idled
	}
	// A timer that re-arms itself, rather than a goroutine per tunnel:
	// nothing runs until the deadline, which matters at thousands of
	// short tunnels a second.
	var mu sync.Mutex
	var t *time.Timer
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		since := time.Since(time.Unix(0, activity.Load()))
		if since >= idle {
			idled.Store(true)
			cancel()
			return
		}
		t.Reset(idle - since)
	}
	mu.Lock()
	t = time.AfterFunc(idle, check)
	mu.Unlock()
	context.AfterFunc(ctx, func() { t.Stop() })
	return &idled
}
