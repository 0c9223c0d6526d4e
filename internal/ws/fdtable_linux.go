//go:build linux

package ws

import (
	"sync"
	"sync/atomic"
)

// fdChunkSize is the number of descriptors one chunk of an fdTable covers.
const fdChunkSize = 512

type fdChunk [fdChunkSize]atomic.Pointer[Conn]

// fdTable maps a descriptor to the connection registered on it, for all the
// epoll loops of a Transport: 8 bytes a descriptor, in chunks allocated as
// descriptors reach them and kept for the Transport's life, where a map per
// loop cost ~29 bytes a connection (issue 11's idle target). Descriptors are
// dense and reused lowest first, so the table stays about as long as the
// number of open descriptors.
//
// Lookups are lock-free (the loops look up every event); registration takes
// mu only to grow the chunk index. A slot holds the last connection
// registered on its descriptor until that connection is removed; the loops
// tell a stale event (for a closed connection whose descriptor was reused)
// apart by the connection's generation, as before.
type fdTable struct {
	mu     sync.Mutex                                // guards growth: a new index or chunk
	chunks atomic.Pointer[[]atomic.Pointer[fdChunk]] // copied on growth; chunks never move
}

// slotIfPresent returns fd's slot, or nil if its chunk does not exist yet.
func (t *fdTable) slotIfPresent(fd int32) *atomic.Pointer[Conn] {
	cs := t.chunks.Load()
	if cs == nil || fd < 0 {
		return nil
	}
	i := int(fd) / fdChunkSize
	if i >= len(*cs) {
		return nil
	}
	ch := (*cs)[i].Load()
	if ch == nil {
		return nil
	}
	return &ch[int(fd)%fdChunkSize]
}

// load returns the connection registered on fd, or nil.
func (t *fdTable) load(fd int32) *Conn {
	if s := t.slotIfPresent(fd); s != nil {
		return s.Load()
	}
	return nil
}

// store registers c on its descriptor.
func (t *fdTable) store(c *Conn) {
	t.slot(c.fd).Store(c)
}

// remove unregisters c unless another connection took its descriptor since.
func (t *fdTable) remove(c *Conn) {
	if s := t.slotIfPresent(c.fd); s != nil {
		s.CompareAndSwap(c, nil)
	}
}

// slot returns fd's slot, growing the table to hold it: the index doubles,
// a chunk is made only when a descriptor in its range is registered.
func (t *fdTable) slot(fd int32) *atomic.Pointer[Conn] {
	if s := t.slotIfPresent(fd); s != nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var idx []atomic.Pointer[fdChunk]
	if cs := t.chunks.Load(); cs != nil {
		idx = *cs
	}
	i := int(fd) / fdChunkSize
	if i >= len(idx) {
		grown := make([]atomic.Pointer[fdChunk], max(i+1, 2*len(idx)))
		for j := range idx {
			grown[j].Store(idx[j].Load())
		}
		t.chunks.Store(&grown)
		idx = grown
	}
	ch := idx[i].Load()
	if ch == nil {
		ch = new(fdChunk)
		idx[i].Store(ch)
	}
	return &ch[int(fd)%fdChunkSize]
}

// appendConns appends to dst the connections registered with loop l.
func (t *fdTable) appendConns(dst []*Conn, l *loop) []*Conn {
	cs := t.chunks.Load()
	if cs == nil {
		return dst
	}
	for j := range *cs {
		ch := (*cs)[j].Load()
		if ch == nil {
			continue
		}
		for i := range ch {
			if c := ch[i].Load(); c != nil && c.t.loops[c.li] == l {
				dst = append(dst, c)
			}
		}
	}
	return dst
}
