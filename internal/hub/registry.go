package hub

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

const registryShards = 64

// registry indexes open connections by device and user (the transport lists
// them all; see each) and counts them. It is sharded so
// that connects and disconnects on different shards never contend; a
// device's and a user's entries live in the shard of their own key.
type registry struct {
	seed   maphash.Seed
	count  atomic.Int64
	shards [registryShards]regShard
	seen   seenQueue // last-seen times waiting for Deps.DeviceSeen
}

type regShard struct {
	mu      sync.RWMutex
	devices map[string]*Conn    // guarded by mu: by device id
	users   map[string]userSlot // guarded by mu: by user id, absent for a user with neither a count nor a connection
	more    map[string][]*Conn  // guarded by mu: a user's further connections, by user id, absent for a user with one
}

// userSlot is a user's entry in the registry: how many of its connections
// this node admitted (Hub.admit: from before the upgrade until they close,
// for MaxConnectionsPerUser) and the first of them registered. One map slot
// holds both: the counts in a map of their own cost every connected user a
// second slot (~43 bytes).
type userSlot struct {
	first    *Conn // the user's first registered connection; nil before the welcome
	admitted int   // connections admitted and not yet released
}

// A user's connections on this node, in the order they were registered: a
// user has few (most have one), so the first is the map slot itself and the
// others wait in more, far smaller than a slice or a map per user.

// setUserLocked stores the user's slot, or forgets a user with neither a
// count nor a connection. Called with mu held.
func (s *regShard) setUserLocked(userID string, u userSlot) {
	if u.first == nil && u.admitted == 0 {
		delete(s.users, userID)
		return
	}
	s.users[userID] = u
}

// userConnsLocked returns a copy of the user's connections. Called with mu
// held (read).
func (s *regShard) userConnsLocked(userID string) []*Conn {
	first := s.users[userID].first
	if first == nil {
		return nil
	}
	more := s.more[userID]
	conns := make([]*Conn, 0, 1+len(more))
	conns = append(conns, first)
	return append(conns, more...)
}

// addUserLocked adds c to the user's connections. Called with mu held.
func (s *regShard) addUserLocked(userID string, c *Conn) {
	if u := s.users[userID]; u.first == nil {
		u.first = c
		s.users[userID] = u
		return
	}
	s.more[userID] = append(s.more[userID], c)
}

// removeUserLocked removes c from the user's connections, if it is there.
// Called with mu held.
func (s *regShard) removeUserLocked(userID string, c *Conn) {
	more := s.more[userID]
	if u := s.users[userID]; u.first == c {
		if len(more) == 0 {
			u.first = nil
			s.setUserLocked(userID, u)
			return
		}
		u.first = more[0]
		s.users[userID] = u
		more = slices.Delete(more, 0, 1) // zeroes the vacated element
	} else {
		i := slices.Index(more, c)
		if i < 0 {
			return
		}
		more = slices.Delete(more, i, i+1)
	}
	if len(more) == 0 {
		delete(s.more, userID)
	} else {
		s.more[userID] = more
	}
}

func (r *registry) init() {
	r.seed = maphash.MakeSeed()
	for i := range r.shards {
		s := &r.shards[i]
		s.devices = make(map[string]*Conn)
		s.users = make(map[string]userSlot)
		s.more = make(map[string][]*Conn)
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
	r.count.Add(1)

	if p.UserID != "" {
		us := r.shard("u/" + p.UserID)
		us.mu.Lock()
		us.addUserLocked(p.UserID, c)
		us.mu.Unlock()
	}
	if p.DeviceID != "" {
		ds := r.shard("d/" + p.DeviceID)
		ds.mu.Lock()
		old := ds.devices[p.DeviceID]
		ds.devices[p.DeviceID] = c
		ds.mu.Unlock()
		if old != nil && old != c {
			old.Disconnect(protocol.DisconnectReplaced)
		}
	}
	return true
}

// remove unregisters c. It reports whether c was its device's current
// connection (so the device is now offline on this node).
func (r *registry) remove(c *Conn) (deviceGone bool) {
	p := c.Principal()
	r.count.Add(-1) // unregister calls remove once per add
	if p.UserID != "" {
		us := r.shard("u/" + p.UserID)
		us.mu.Lock()
		us.removeUserLocked(p.UserID, c)
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

// admitUser counts one more admitted connection of the user, unless it has
// limit already (limit ≤ 0: no limit).
func (r *registry) admitUser(userID string, limit int) bool {
	s := r.shard("u/" + userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if limit > 0 && u.admitted >= limit {
		return false
	}
	u.admitted++
	s.users[userID] = u
	return true
}

// releaseUser counts one fewer admitted connection of the user.
func (r *registry) releaseUser(userID string) {
	s := r.shard("u/" + userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok || u.admitted == 0 {
		return
	}
	u.admitted--
	s.setUserLocked(userID, u)
}

// admittedOf returns the user's admitted connections.
func (r *registry) admittedOf(userID string) int {
	s := r.shard("u/" + userID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.users[userID].admitted
}

// addAdmitted adds every user's admitted connections to counts, by owner
// key (owner.key).
func (r *registry) addAdmitted(counts map[string]int) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for id, u := range s.users {
			if u.admitted > 0 {
				counts[owner{id: id}.key()] = u.admitted
			}
		}
		s.mu.RUnlock()
	}
}

func (r *registry) byDevice(deviceID string) *Conn {
	s := r.shard("d/" + deviceID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.devices[deviceID]
}

// eachDevice calls fn for every device's connection, outside the shard
// locks (each shard is copied under its read lock).
func (r *registry) eachDevice(fn func(device string, c *Conn)) {
	type entry struct {
		device string
		c      *Conn
	}
	var batch []entry
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for d, c := range s.devices {
			batch = append(batch, entry{d, c})
		}
		s.mu.RUnlock()
		for _, e := range batch {
			fn(e.device, e.c)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// eachUserConnLocked calls fn for every connection of every user, with the
// connection's shard read-locked: fn must take no lock but leaves and
// never block (the expiry scan, under expiryIndex.mu).
func (r *registry) eachUserConnLocked(fn func(c *Conn)) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for _, u := range s.users {
			if u.first != nil {
				fn(u.first)
			}
		}
		for _, more := range s.more {
			for _, c := range more {
				fn(c)
			}
		}
		s.mu.RUnlock()
	}
}

// eachOfUser calls fn for the user's connections, outside the shard lock.
func (r *registry) eachOfUser(userID string, fn func(*Conn)) {
	s := r.shard("u/" + userID)
	s.mu.RLock()
	conns := s.userConnsLocked(userID)
	s.mu.RUnlock()
	for _, c := range conns {
		fn(c)
	}
}

// eachConn calls fn for every registered connection, from the transport's
// list (the registry keeps no index by connection id: it would cost every
// idle connection a map entry for the sake of shutdown).
func (h *Hub) eachConn(fn func(*Conn)) {
	for _, t := range [...]*ws.Transport{h.transport, h.iot} {
		for _, w := range t.Conns(nil) {
			if c, ok := w.Handler().(*Conn); ok && c.registered() {
				fn(c)
			}
		}
	}
}

// deviceGone records the device's last-seen time when its connection closed.
// The durable write is coalesced (see seenQueue): one SQLite write per
// disconnect was about a quarter of the server's CPU in a connect storm.
func (h *Hub) deviceGone(c *Conn) {
	p := c.Principal()
	now := h.deps.Now()
	h.lastSeen.set(p.DeviceID, now)
	if h.deps.DeviceSeen == nil || h.closed.Load() {
		return
	}
	q := &h.reg.seen
	q.mu.Lock()
	if q.pending == nil {
		q.pending = make(map[seenKey]time.Time)
	}
	q.pending[seenKey{p.UserID, p.DeviceID}] = now
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		h.Go(h.flushSeen)
	}
}

// seenFlushEvery is how long last-seen times gather before they are written:
// a device that disconnects several times meanwhile is written once.
const seenFlushEvery = 250 * time.Millisecond

// seenQueue holds last-seen times not yet handed to Deps.DeviceSeen. One
// flushSeen goroutine runs while it is not empty.
type seenQueue struct {
	mu      sync.Mutex
	pending map[seenKey]time.Time // guarded by mu: latest time per device
	running bool                  // guarded by mu: flushSeen is running
}

type seenKey struct{ user, device string }

// SeenDevice is a device's last-seen time, as Deps.DeviceSeen records it.
type SeenDevice struct {
	UserID, DeviceID string
	At               time.Time // when its last connection on this node closed
}

// flushSeen writes the queued last-seen times every seenFlushEvery, all of
// them in one Deps.DeviceSeen call, and exits once the queue is empty; when
// the hub closes it writes what is left (bounded by 5s) and exits.
func (h *Hub) flushSeen(ctx context.Context) {
	q := &h.reg.seen
	t := time.NewTimer(seenFlushEvery)
	defer t.Stop()
	for {
		stopping := false
		select {
		case <-ctx.Done():
			stopping = true
			ctx = context.WithoutCancel(ctx)
		case <-t.C:
		}
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		seen := make([]SeenDevice, 0, len(batch))
		for k, at := range batch {
			seen = append(seen, SeenDevice{UserID: k.user, DeviceID: k.device, At: at})
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := h.deps.DeviceSeen(wctx, seen); err != nil {
			h.log.Warn("record last seen", "devices", len(seen), "err", err)
		}
		cancel()
		if stopping {
			q.mu.Lock()
			q.running = false
			q.mu.Unlock()
			return
		}
		t.Reset(seenFlushEvery)
	}
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
