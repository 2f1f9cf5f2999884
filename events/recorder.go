package events

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clawhold/clawhold/store"
)

// Recorder appends events that arrive faster than one transaction each
// could keep up with (every process a sandbox starts is one), in batches:
// up to 512 events or 100 ms per transaction. Add never blocks on the
// database.
type Recorder struct {
	db   *store.DB
	ch   chan Event
	done chan struct{}

	mu      sync.Mutex
	err     error
	dropped int
}

// NewRecorder starts a recorder writing to db. Close it to flush.
func NewRecorder(db *store.DB) *Recorder {
	r := &Recorder{db: db, ch: make(chan Event, 8192), done: make(chan struct{})}
	go r.loop()
	return r
}

// Add queues ev. When the queue is full (the database is far behind), ev
// is counted as dropped and Close reports it.
func (r *Recorder) Add(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	select {
	case r.ch <- ev:
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

// Close flushes what is queued and reports the first write error or the
// number of events dropped.
func (r *Recorder) Close() error {
	close(r.ch)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.dropped > 0 {
		return fmt.Errorf("recording events in %s: %d dropped: the database could not keep up", r.db.Name(), r.dropped)
	}
	return nil
}

func (r *Recorder) loop() {
	defer close(r.done)
	batch := make([]Event, 0, 512)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := r.db.Update(context.Background(), func(tx *store.Tx) error {
			for _, ev := range batch {
				if err := AppendTx(context.Background(), tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			r.mu.Lock()
			if r.err == nil {
				r.err = err
			}
			r.mu.Unlock()
		}
		batch = batch[:0]
	}
	for {
		select {
		case ev, ok := <-r.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, ev)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}
