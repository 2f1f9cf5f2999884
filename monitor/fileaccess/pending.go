package fileaccess

import "time"

// maxPending bounds the opens waiting for their close; beyond it the oldest
// is reported (if not yet) and forgotten.
const maxPending = 8192

// openRec is an open waiting for its close event, which tells its kind.
type openRec struct {
	a       Access // everything but Kind
	key     fileKey
	kpath   string
	emitted bool // reported by the sweep already; the close only forgets it
}

// pendingOpens pairs opens with closes. Used by the reader goroutine only.
type pendingOpens struct {
	byKey map[fileKey][]*openRec
	n     int
}

func (p *pendingOpens) add(r *openRec) {
	if p.byKey == nil {
		p.byKey = map[fileKey][]*openRec{}
	}
	p.byKey[r.key] = append(p.byKey[r.key], r)
	p.n++
}

// take removes the open matching a close of key by pid: the oldest open of
// the file by the same process, else the oldest open of the file by anyone
// (the last reference to an open file may be dropped by a child that
// inherited it). It returns nil when there is none (opened before the
// watcher started).
func (p *pendingOpens) take(key fileKey, pid int) *openRec {
	list := p.byKey[key]
	if len(list) == 0 {
		return nil
	}
	i := 0
	for j, r := range list {
		if r.a.Pid == pid {
			i = j
			break
		}
	}
	r := list[i]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.byKey, key)
	} else {
		p.byKey[key] = list
	}
	p.n--
	return r
}

// sweep reports opens older than age that have not been closed, using
// kindOf to learn their kind, and forgets the oldest ones beyond maxPending.
func (p *pendingOpens) sweep(now time.Time, age time.Duration, kindOf func(*openRec) string, emit func(Access)) {
	for _, list := range p.byKey {
		for _, r := range list {
			if !r.emitted && now.Sub(r.a.Time) >= age {
				a := r.a
				a.Kind = kindOf(r)
				emit(a)
				r.emitted = true
			}
		}
	}
	for p.n > maxPending {
		var oldest *openRec
		for _, list := range p.byKey {
			if oldest == nil || list[0].a.Time.Before(oldest.a.Time) {
				oldest = list[0]
			}
		}
		r := p.take(oldest.key, oldest.a.Pid)
		if !r.emitted {
			a := r.a
			a.Kind = kindOf(r)
			emit(a)
		}
	}
}
