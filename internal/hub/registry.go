package hub

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/protocol"
)

const registryShards = 64

// registry indexes open connections by id, device and user. It is sharded so
// that connects and disconnects on different shards never contend; a
// device's and a user's entries live in the shard of their own key.
type registry struct {
	seed   maphash.Seed
	count  atomic.Int64
	shards [registryShards]regShard
}

type regShard struct {
	mu      sync.RWMutex
	conns   map[string]*Conn              // guarded by mu: by connection id
	devices map[string]*Conn              // guarded by mu: by device id
	users   map[string]map[*Conn]struct{} // guarded by mu: by user id
}

func (r *registry) init() {
	r.seed = maphash.MakeSeed()
	for i := range r.shards {
		s := &r.shards[i]
		s.conns = make(map[string]*Conn)
		s.devices = make(map[string]*Conn)
		s.users = make(map[string]map[*Conn]struct{})
	}
}

func (r *registry) shard(key string) *regShard {
	return &r.shards[maphash.String(r.seed, key)%registryShards]
}

// add registers c. A connection of the same device that was already there is
// replaced: it is closed with 4009 after the new one is in place. It returns
// false when c closed before it could be registered.
func (r *registry) add(c *Conn) bool {
	p := c.Principal()
	s := r.shard(c.id)
	s.mu.Lock()
	s.conns[c.id] = c
	s.mu.Unlock()
	r.count.Add(1)

	if p.UserID != "" {
		us := r.shard("u/" + p.UserID)
		us.mu.Lock()
		set := us.users[p.UserID]
		if set == nil {
			set = make(map[*Conn]struct{}, 1)
			us.users[p.UserID] = set
		}
		set[c] = struct{}{}
		us.mu.Unlock()
	}
	if p.DeviceID != "" {
		ds := r.shard("d/" + p.DeviceID)
		ds.mu.Lock()
		old := ds.devices[p.DeviceID]
		ds.devices[p.DeviceID] = c
		ds.mu.Unlock()
		if old != nil && old != c {
			old.Close(protocol.CloseReplaced, protocol.CloseReason(protocol.CloseReplaced))
		}
	}
	return true
}

// remove unregisters c. It reports whether c was its device's current
// connection (so the device is now offline on this node).
func (r *registry) remove(c *Conn) (deviceGone bool) {
	p := c.Principal()
	s := r.shard(c.id)
	s.mu.Lock()
	if _, ok := s.conns[c.id]; ok {
		delete(s.conns, c.id)
		r.count.Add(-1)
	}
	s.mu.Unlock()
	if p.UserID != "" {
		us := r.shard("u/" + p.UserID)
		us.mu.Lock()
		if set := us.users[p.UserID]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(us.users, p.UserID)
			}
		}
		us.mu.Unlock()
	}
	if p.DeviceID != "" {
		ds := r.shard("d/" + p.DeviceID)
		ds.mu.Lock()
		if ds.devices[p.DeviceID] == c {
			delete(ds.devices, p.DeviceID)
			deviceGone = true
		}
		ds.mu.Unlock()
	}
	return deviceGone
}

func (r *registry) byID(id string) *Conn {
	s := r.shard(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.conns[id]
}

func (r *registry) byDevice(deviceID string) *Conn {
	s := r.shard("d/" + deviceID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.devices[deviceID]
}

// eachOfUser calls fn for the user's connections, outside the shard lock.
func (r *registry) eachOfUser(userID string, fn func(*Conn)) {
	s := r.shard("u/" + userID)
	s.mu.RLock()
	conns := make([]*Conn, 0, len(s.users[userID]))
	for c := range s.users[userID] {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	for _, c := range conns {
		fn(c)
	}
}

// each calls fn for every connection, one shard at a time, outside the locks.
func (r *registry) each(fn func(*Conn)) {
	var conns []*Conn
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		conns = conns[:0]
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.RUnlock()
		for _, c := range conns {
			fn(c)
		}
	}
}

// deviceGone records the device's last-seen time when its connection closed.
func (h *Hub) deviceGone(c *Conn) {
	p := c.Principal()
	now := h.deps.Now()
	h.lastSeen.set(p.DeviceID, now)
	if h.deps.DeviceSeen == nil || h.closed.Load() {
		return
	}
	h.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := h.deps.DeviceSeen(ctx, p.UserID, p.DeviceID, now); err != nil {
			h.log.Warn("record last seen", "user", p.UserID, "device", p.DeviceID, "err", err)
		}
	})
}

// lastSeen remembers when devices were last connected to this node, bounded:
// beyond max entries the oldest are forgotten (the store keeps the durable
// record).
type lastSeen struct {
	mu    sync.Mutex
	max   int
	times map[string]time.Time // guarded by mu
	order []string             // guarded by mu: insertion order, for eviction
}

func (l *lastSeen) init(max int) {
	l.max = max
	l.times = make(map[string]time.Time)
}

func (l *lastSeen) set(device string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.times[device]; !ok {
		l.order = append(l.order, device)
	}
	l.times[device] = t
	for len(l.times) > l.max && len(l.order) > 0 {
		delete(l.times, l.order[0])
		l.order = l.order[1:]
	}
}

func (l *lastSeen) get(device string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.times[device]
	return t, ok
}
