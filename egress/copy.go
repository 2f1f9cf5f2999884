package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
// ends or the tunnel idles (idle 0: no idle limit).
//
// Without a rate limit it copies with deadlines (and splice(2) between
// sockets), which ends an idle tunnel between idle and 2×idle after its
// last byte; see pump. With one it copies through a buffer, waiting on the
// limiter, and ends idle tunnels idle after their last byte.
func tunnel(ctx context.Context, client, upstream net.Conn, lim *rate.Limiter, idle time.Duration, bufs *bufPool) (up, down int64, err error) {
	if lim == nil {
		return tunnelDirect(ctx, client, upstream, idle, bufs)
	}
	return tunnelLimited(ctx, client, upstream, lim, idle, bufs)
}

// errIdle ends a direction of a tunnel that went idle.
var errIdle = errors.New("idle")

// duplex is the state the two directions of a tunnel share.
type duplex struct {
	client, upstream net.Conn
	idle             time.Duration
	bufs             *bufPool
	// quiet[i] is set while direction i (0 up, 1 down) has moved nothing
	// for a whole idle period, and for good once it has finished.
	quiet    [2]atomic.Bool
	finished atomic.Int32 // directions done
	idled    atomic.Bool
	once     sync.Once
}

func (t *duplex) closeBoth() {
	t.once.Do(func() {
		t.client.Close()
		t.upstream.Close()
	})
}

// finish ends direction me after its copy returned err: half-close its
// destination on a clean EOF, or end the whole tunnel.
func (t *duplex) finish(dst net.Conn, err error) {
	if t.finished.Add(1) == 2 {
		return // both done: the close that follows sends the FIN
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		cw.CloseWrite()
		return
	}
	t.closeBoth() // no half-close possible, or an error: end both directions
}

func tunnelDirect(ctx context.Context, client, upstream net.Conn, idle time.Duration, bufs *bufPool) (up, down int64, err error) {
	t := &duplex{client: client, upstream: upstream, idle: idle, bufs: bufs}
	stop := context.AfterFunc(ctx, t.closeBoth)
	defer stop()

	var upErr, downErr error
	half := func(dst, src net.Conn, me int, n *int64, errp *error) {
		defer func() {
			if v := recover(); v != nil {
				*errp = fmt.Errorf("panic: %v", v)
				t.closeBoth()
			}
		}()
		*n, *errp = t.pump(dst, src, me)
		t.finish(dst, *errp)
	}
	// One direction on this goroutine: a goroutine fewer per tunnel.
	done := make(chan struct{})
	go func() {
		defer close(done)
		half(upstream, client, 0, &up, &upErr)
	}()
	half(client, upstream, 1, &down, &downErr)
	<-done

	if t.idled.Load() {
		return up, down, fmt.Errorf("idle for %s (limits.idle_timeout)", idle)
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
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

// spliceChunk is how much one splice call may move before the deadlines
// are pushed on: large enough to cost nothing at full speed.
const spliceChunk = 4 << 20

// pump copies src to dst (direction me of t) until src's EOF, an error or
// the tunnel idles, and returns the bytes written.
//
// It reads and writes through a pooled buffer; once a read fills the
// buffer (bulk data), between two TCP sockets (or from a unix socket to
// TCP), it lets the kernel move the bytes instead (splice(2) through
// io.ReaderFrom), a chunk at a time. Short exchanges never splice: the
// pipe splice needs costs more than it saves on a few small reads. Idleness is
// kept with deadlines instead of a timestamp per read: each chunk gets a
// read deadline idle ahead, and a write deadline 2×idle ahead. A read
// period in which nothing arrives makes the direction quiet (it then reads
// through the buffer, so that the first byte to arrive clears that at
// once), and the tunnel ends when both directions are quiet (a finished
// direction counts as quiet): between idle and 2×idle after the last byte
// either way. A write that cannot finish within 2×idle (the receiver reads
// nothing) ends it too, since spliced bytes may be stuck in the kernel.
func (t *duplex) pump(dst, src net.Conn, me int) (int64, error) {
	rf, canSplice := dst.(*net.TCPConn)
	switch src.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		canSplice = false
	}
	lr := io.LimitedReader{R: src}
	var pb *[]byte
	defer func() {
		if pb != nil {
			t.bufs.put(pb)
		}
	}()
	var total int64
	quiet, bulk := false, false
	for {
		var wdl time.Time
		if t.idle > 0 {
			now := time.Now()
			src.SetReadDeadline(now.Add(t.idle))
			wdl = now.Add(2 * t.idle)
			dst.SetWriteDeadline(wdl)
		}
		var n int64
		var err error
		eof := false
		if bulk && !quiet {
			lr.N = spliceChunk
			n, err = rf.ReadFrom(&lr)
			eof = err == nil && lr.N > 0
		} else {
			if pb == nil {
				pb = t.bufs.get()
			}
			n, err = copyOnce(dst, src, *pb)
			if err == io.EOF {
				eof, err = true, nil
			}
			bulk = canSplice && n == int64(len(*pb))
		}
		total += n
		if n > 0 && quiet {
			quiet = false
			t.quiet[me].Store(false)
		}
		if eof {
			t.quiet[me].Store(true)
			return total, nil
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		if !time.Now().Before(wdl) {
			t.idled.Store(true)
			return total, errIdle
		}
		if n > 0 {
			continue
		}
		if !quiet {
			quiet = true
			t.quiet[me].Store(true)
		}
		if t.quiet[1-me].Load() {
			t.idled.Store(true)
			return total, errIdle
		}
	}
}

// copyOnce reads once from src and writes what it got to dst.
func copyOnce(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	n, rerr := src.Read(buf)
	if n > 0 {
		w, werr := dst.Write(buf[:n])
		if werr != nil {
			return int64(w), werr
		}
	}
	return int64(n), rerr
}

// tunnelLimited is tunnel with a rate limiter: every byte waits for it.
func tunnelLimited(ctx context.Context, client, upstream net.Conn, lim *rate.Limiter, idle time.Duration, bufs *bufPool) (up, down int64, err error) {
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

	var upErr, downErr error
	half := func(dst, src net.Conn, n *int64, errp *error) {
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		half(upstream, client, &up, &upErr)
	}()
	half(client, upstream, &down, &downErr)
	<-done

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
	return errors.Is(err, errIdle) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled)
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
