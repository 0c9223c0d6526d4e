// Package arbiter decides what a device's output surfaces show when several
// apps want them: the output arbiter of the apps platform (docs/apps-arbiter.md).
//
// An Arbiter is a state machine over one device's surfaces. Its inputs are
// method calls, each with the time it happens at: Request, Cancel, Clear,
// AppEnded, BootDone and Tick. Each returns an Output: the commands to send
// to the device (show a request's content on a surface, or clear it), the
// events to send to apps (queued, shown, superseded, rejected, expired,
// cleared, hidden, restored) and the next time the Arbiter must be ticked.
// It starts no goroutine, holds no timer and never reads the clock, so it
// is tested with a fake clock and driven in production by one goroutine
// per device that owns it (it is not safe for concurrent use).
//
// Rules, in the order they apply:
//
//   - A device declares its surfaces, each with a minimum interval between
//     two commands (300 ms for BLE glasses, 0 for a screen).
//   - Each request has a priority class stamped by the gateway: system >
//     foreground > background > ambient. A higher class preempts a lower
//     one at once; among equals the newest request wins, except that the
//     app whose background request was last shown on a surface holds a
//     lease on it: another app's background request cannot take the
//     surface until the holder has been idle (has had nothing newer shown)
//     for Config.BackgroundLease.
//   - Per surface only each app's latest request is kept: a new request
//     supersedes the app's previous one on that surface.
//   - Inside a surface's minimum interval, changes are coalesced: the
//     surface is re-arbitrated when the interval ends and only the winner
//     at that moment reaches the device. Nothing is dropped silently: a
//     request that never reached the device was superseded, cleared or
//     expired, and says so.
//   - A request whose TTL ends is hidden (or, if never shown, expires) and
//     the surface is re-arbitrated.
//   - A request with Restore set that is preempted while it has TTL left
//     waits and comes back when it is again the best request for its
//     surface (its preemptor ended). A lower-class request with Restore set
//     waits the same way instead of being rejected.
//   - While the device boots, every request is queued; queued requests
//     whose TTL ends expire; when boot ends every surface is arbitrated.
//   - Force skips only the minimum interval: a forced request still needs
//     to win on priority.
//
// Every request gets exactly one terminal event: Shown, Superseded,
// Rejected (with a reason and, when known, a retry-after), Expired or
// Cleared. Before it, zero or more Queued progress events; after Shown,
// Hidden events (with Pending while the request waits to be restored) and
// Restored events, ending with a Hidden that is not Pending. Event.Final
// marks each request's last event.
package arbiter

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Class is a request's priority class; a higher value wins.
type Class uint8

// Priority classes, lowest first.
const (
	Ambient Class = iota
	Background
	Foreground
	System
)

var classNames = [...]string{"ambient", "background", "foreground", "system"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", c)
}

// ParseClass reads a class by name.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("arbiter: unknown priority class %q", s)
}

// Surface is one output a device declares.
type Surface struct {
	Name        string        // "main", "overlay", "led", "speaker", …
	MinInterval time.Duration // least time between two commands to this surface
}

// Config is the device's side of arbitration.
type Config struct {
	// Surfaces are the device's outputs; at least one, names unique.
	Surfaces []Surface
	// BackgroundLease is how long, after its last background request was
	// shown, an app keeps other apps' background requests off a surface;
	// zero means 10 s.
	BackgroundLease time.Duration
	// MaxWaiting bounds the requests waiting per surface (one per app at
	// most); a request beyond it is rejected with ReasonFull. Zero means 32.
	MaxWaiting int
	// Booting starts the Arbiter in its boot phase: requests queue until
	// BootDone.
	Booting bool
	// Metrics, when set, counts every event.
	Metrics Metrics
}

// Defaults.
const (
	DefaultBackgroundLease = 10 * time.Second
	DefaultMaxWaiting      = 32
	maxSurfaces            = 64
)

// Request is one app's wish to show something on a surface.
type Request struct {
	ID      string        // unique among the Arbiter's live requests
	App     string        // the app that sent it, stamped by the gateway
	Class   Class         // stamped by the gateway from the app's registration
	Surface string        // a declared surface
	Content []byte        // opaque to the arbiter; carried in the Show command
	TTL     time.Duration // how long after the request it may be shown; zero: until replaced, cleared or preempted
	Restore bool          // restore: on_resume: come back after a preemption, wait instead of being rejected
	Force   bool          // skip the surface's minimum interval (a scope the gateway checks)
}

// Op is what a Command does to a surface.
type Op uint8

// Command operations.
const (
	Show  Op = iota + 1 // show Request.Content, replacing what the surface shows
	Clear               // show nothing
)

func (o Op) String() string {
	switch o {
	case Show:
		return "show"
	case Clear:
		return "clear"
	}
	return fmt.Sprintf("op(%d)", o)
}

// Command is an instruction for the device.
type Command struct {
	Surface string
	Op      Op
	Request Request // for Show: the request whose content to show
}

// Kind is an event's type.
type Kind uint8

// Event kinds. Shown, Superseded, Rejected, Expired and Cleared are
// terminal: each request gets exactly one of them.
const (
	Queued     Kind = iota + 1 // progress: waiting (Reason: boot, throttle or busy)
	Shown                      // terminal: on the device
	Superseded                 // terminal: replaced by the same app's newer request before it was shown
	Rejected                   // terminal: refused (Reason, RetryAfter)
	Expired                    // terminal: its TTL ended before it was shown
	Cleared                    // terminal: cancelled, cleared or its app ended before it was shown
	Hidden                     // after Shown: off the device (Reason: preempted, expired, cleared, superseded)
	Restored                   // after Hidden with Pending: back on the device
)

var kindNames = [...]string{"", "queued", "shown", "superseded", "rejected", "expired", "cleared", "hidden", "restored"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Terminal reports whether k is a request's one terminal outcome.
func (k Kind) Terminal() bool { return k >= Shown && k <= Cleared }

// Reason qualifies Queued, Rejected and Hidden events.
type Reason string

// Reasons.
const (
	ReasonBoot           Reason = "boot"            // queued: the device is booting
	ReasonThrottle       Reason = "throttle"        // queued: inside the surface's minimum interval
	ReasonBusy           Reason = "busy"            // queued (Restore) or rejected: a higher-class request, or a background lease, holds the surface
	ReasonPreempted      Reason = "preempted"       // hidden: a higher-class or newer request took the surface
	ReasonExpired        Reason = "expired"         // hidden: its TTL ended
	ReasonCleared        Reason = "cleared"         // hidden: cancelled, cleared, or its app ended
	ReasonSuperseded     Reason = "superseded"      // hidden: the same app sent a newer request for the surface
	ReasonUnknownSurface Reason = "unknown_surface" // rejected: the device declares no such surface
	ReasonInvalid        Reason = "invalid"         // rejected: no id or app, a negative TTL, an unknown class
	ReasonDuplicate      Reason = "duplicate"       // rejected: a live request has this id
	ReasonFull           Reason = "full"            // rejected: too many requests wait for the surface
)

// Event tells an app what happened to one of its requests.
type Event struct {
	At         time.Time
	Request    string
	App        string
	Surface    string
	Kind       Kind
	Reason     Reason
	RetryAfter time.Duration // Rejected with ReasonBusy: when the surface may free up, if known
	Pending    bool          // Hidden: the request waits to be restored
}

// Final reports whether e is its request's last event.
func (e Event) Final() bool {
	return (e.Kind.Terminal() && e.Kind != Shown) || (e.Kind == Hidden && !e.Pending)
}

// Output is the result of one input.
type Output struct {
	Commands []Command // for the device, in order
	Events   []Event   // for the apps, in order
	// Next is when the Arbiter must be ticked next (a minimum interval
	// ends, a TTL or a lease runs out); zero when nothing is due. It may be
	// at or before the input's time when the caller ticked late: tick at
	// once.
	Next time.Time
}

// Metrics counts events. Implementations must be cheap; Counts is one.
type Metrics interface {
	Event(kind Kind, reason Reason)
}

// entry is one live request.
type entry struct {
	req     Request
	surface *surface
	seq     uint64    // arrival order; among equal classes the newer wins
	expires time.Time // zero: no TTL
	shown   bool      // Shown was emitted
	queued  Reason    // the last Queued reason emitted, to emit each once
	gone    Reason    // on the device but no longer wanted (expired, cleared, superseded): hidden at the next command
}

func (e *entry) expiredAt(now time.Time) bool { return !e.expires.IsZero() && !now.Before(e.expires) }

// surface is one declared surface's state.
type surface struct {
	decl    Surface
	current *entry   // what the device shows; nil: nothing. May be gone until the next command.
	waiting []*entry // live requests not on the device, in arrival order
	lastCmd time.Time
	everCmd bool // a command was sent; lastCmd is meaningful
	// The background lease: the app whose background request was last
	// shown here keeps other background requests off the surface until
	// leaseUntil, renewed each time one of its requests is shown.
	leaseApp   string
	leaseUntil time.Time
}

// leased reports whether app holds s's background lease at now.
func (s *surface) leased(app string, now time.Time) bool {
	return s.leaseApp == app && now.Before(s.leaseUntil)
}

// Arbiter is one device's output arbitration. Not safe for concurrent use:
// one goroutine owns it.
type Arbiter struct {
	cfg      Config              // set once by New
	surfaces map[string]*surface // set once by New
	order    []*surface          // declaration order, for deterministic output
	live     map[string]*entry   // by request id: waiting or on the device
	booting  bool
	seq      uint64
	now      time.Time // the latest time seen; time never goes back
	out      Output    // the Output being built by the current input
}

// New returns an Arbiter for the surfaces in cfg.
func New(cfg Config) (*Arbiter, error) {
	if len(cfg.Surfaces) == 0 || len(cfg.Surfaces) > maxSurfaces {
		return nil, fmt.Errorf("arbiter: %d surfaces, want 1 to %d", len(cfg.Surfaces), maxSurfaces)
	}
	if cfg.BackgroundLease <= 0 {
		cfg.BackgroundLease = DefaultBackgroundLease
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	a := &Arbiter{cfg: cfg, surfaces: make(map[string]*surface), live: make(map[string]*entry), booting: cfg.Booting}
	for _, d := range cfg.Surfaces {
		if d.Name == "" || d.MinInterval < 0 {
			return nil, errors.New("arbiter: a surface needs a name and a non-negative minimum interval")
		}
		if a.surfaces[d.Name] != nil {
			return nil, fmt.Errorf("arbiter: surface %q declared twice", d.Name)
		}
		s := &surface{decl: d}
		a.surfaces[d.Name] = s
		a.order = append(a.order, s)
	}
	return a, nil
}

// Booting reports whether the Arbiter is in its boot phase.
func (a *Arbiter) Booting() bool { return a.booting }

// Showing returns the request a surface shows (as far as the device was
// told), if any.
func (a *Arbiter) Showing(surfaceName string) (Request, bool) {
	s := a.surfaces[surfaceName]
	if s == nil || s.current == nil {
		return Request{}, false
	}
	return s.current.req, true
}

// begin starts an input at now (never earlier than the last input).
func (a *Arbiter) begin(now time.Time) {
	if now.After(a.now) {
		a.now = now
	}
	a.out = Output{}
}

// end finishes an input: the next wake-up, and the Output.
func (a *Arbiter) end() Output {
	out := a.out
	a.out = Output{}
	var next time.Time
	for _, s := range a.order {
		if t := a.wake(s); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	out.Next = next
	return out
}

func (a *Arbiter) emit(e *entry, kind Kind, reason Reason, f func(*Event)) {
	ev := Event{At: a.now, Request: e.req.ID, App: e.req.App, Surface: e.req.Surface, Kind: kind, Reason: reason}
	if f != nil {
		f(&ev)
	}
	a.out.Events = append(a.out.Events, ev)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.Event(kind, reason)
	}
}

// Request arbitrates a new request.
func (a *Arbiter) Request(now time.Time, r Request) Output {
	a.begin(now)
	e := &entry{req: r}
	s := a.surfaces[r.Surface]
	switch {
	case r.ID == "" || r.App == "" || r.TTL < 0 || r.Class > System:
		a.emit(e, Rejected, ReasonInvalid, nil)
	case s == nil:
		a.emit(e, Rejected, ReasonUnknownSurface, nil)
	case a.live[r.ID] != nil:
		a.emit(e, Rejected, ReasonDuplicate, nil)
	default:
		prev := a.appEntry(s, r.App)
		if prev == nil && len(s.waiting) >= a.cfg.MaxWaiting {
			a.emit(e, Rejected, ReasonFull, nil)
			break
		}
		if prev != nil {
			a.drop(prev, ReasonSuperseded)
		}
		a.seq++
		e.surface, e.seq = s, a.seq
		if r.TTL > 0 {
			e.expires = a.now.Add(r.TTL)
		}
		a.live[r.ID] = e
		s.waiting = append(s.waiting, e)
		a.settle(s)
	}
	return a.end()
}

// appEntry returns app's live, wanted request on s.
func (a *Arbiter) appEntry(s *surface, app string) *entry {
	if c := s.current; c != nil && c.gone == "" && c.req.App == app {
		return c
	}
	for _, w := range s.waiting {
		if w.req.App == app {
			return w
		}
	}
	return nil
}

// drop ends a live request for reason (superseded, cleared, expired): one
// on the device is marked gone and hidden at the surface's next command; a
// waiting one is removed with its final event.
func (a *Arbiter) drop(e *entry, reason Reason) {
	s := e.surface
	if s.current == e {
		if e.gone == "" {
			e.gone = reason
		}
		return
	}
	if i := slices.Index(s.waiting, e); i >= 0 {
		s.waiting = slices.Delete(s.waiting, i, i+1)
	}
	a.finish(e, reason)
}

// finish ends a request that is not on the device (and no longer in its
// surface's waiting list) with its final event.
func (a *Arbiter) finish(e *entry, reason Reason) {
	delete(a.live, e.req.ID)
	switch {
	case e.shown:
		a.emit(e, Hidden, reason, nil)
	case reason == ReasonSuperseded:
		a.emit(e, Superseded, "", nil)
	case reason == ReasonExpired:
		a.emit(e, Expired, "", nil)
	default:
		a.emit(e, Cleared, "", nil)
	}
}

// Cancel withdraws one of app's requests (an unknown id, or another app's,
// does nothing).
func (a *Arbiter) Cancel(now time.Time, app, id string) Output {
	a.begin(now)
	if e := a.live[id]; e != nil && e.req.App == app && e.gone == "" {
		a.drop(e, ReasonCleared)
		a.settle(e.surface)
	}
	return a.end()
}

// Clear withdraws app's request on a surface, if any.
func (a *Arbiter) Clear(now time.Time, app, surfaceName string) Output {
	a.begin(now)
	if s := a.surfaces[surfaceName]; s != nil {
		if e := a.appEntry(s, app); e != nil {
			a.drop(e, ReasonCleared)
			a.settle(s)
		}
	}
	return a.end()
}

// AppEnded withdraws every request of app (the app stopped, was
// uninstalled or lost the output scope).
func (a *Arbiter) AppEnded(now time.Time, app string) Output {
	a.begin(now)
	for _, s := range a.order {
		if e := a.appEntry(s, app); e != nil {
			a.drop(e, ReasonCleared)
			a.settle(s)
		}
	}
	return a.end()
}

// BootDone ends the boot phase and arbitrates every surface.
func (a *Arbiter) BootDone(now time.Time) Output {
	a.begin(now)
	a.booting = false
	for _, s := range a.order {
		a.settle(s)
	}
	return a.end()
}

// Tick advances the clock: TTLs and leases that ended and minimum intervals
// that passed take effect.
func (a *Arbiter) Tick(now time.Time) Output {
	a.begin(now)
	for _, s := range a.order {
		a.settle(s)
	}
	return a.end()
}

// beats reports whether w should have the surface rather than best.
func (a *Arbiter) beats(w, best *entry) bool {
	if best == nil {
		return true
	}
	if w.req.Class != best.req.Class {
		return w.req.Class > best.req.Class
	}
	if w.req.Class == Background {
		s := best.surface
		switch {
		case s.leased(best.req.App, a.now):
			return false // the lease holds until its holder has been idle long enough
		case s.leased(w.req.App, a.now):
			return true // the holder's newer request, queued behind the throttle
		case s.current == best:
			return true // the lease was released: whoever waits goes next
		}
	}
	return w.seq > best.seq
}

// throttled reports whether s's minimum interval forbids a command now.
func (a *Arbiter) throttled(s *surface) bool {
	return s.everCmd && a.now.Before(s.lastCmd.Add(s.decl.MinInterval))
}

// settle brings one surface to its rules at a.now: expiries, the best
// request, a command if the device must change and may, and the outcome of
// the requests that lost.
func (a *Arbiter) settle(s *surface) {
	kept := s.waiting[:0]
	for _, w := range s.waiting {
		if w.expiredAt(a.now) {
			a.finish(w, ReasonExpired)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
	cur := s.current
	if cur != nil && cur.gone == "" && cur.expiredAt(a.now) {
		cur.gone = ReasonExpired
	}
	if a.booting {
		for _, w := range s.waiting {
			a.queue(w, ReasonBoot)
		}
		return
	}
	var best *entry
	if cur != nil && cur.gone == "" {
		best = cur
	}
	for _, w := range s.waiting {
		if a.beats(w, best) {
			best = w
		}
	}
	if best != cur || (cur != nil && cur.gone != "") {
		if a.throttled(s) && (best == nil || !best.req.Force) {
			// Coalesce: decide again when the interval ends (wake). The
			// would-be winner, and requests not told anything yet, hear why
			// they wait; requests already waiting for another reason keep it.
			for _, w := range s.waiting {
				if w == best || w.queued == "" {
					a.queue(w, ReasonThrottle)
				}
			}
			return
		}
		a.apply(s, best)
	}
	// Everything still waiting lost to best: wait if it may, else reject.
	kept = s.waiting[:0]
	for _, w := range s.waiting {
		if w.req.Restore {
			a.queue(w, ReasonBusy)
			kept = append(kept, w)
			continue
		}
		delete(a.live, w.req.ID)
		retry := a.retryAfter(w, best)
		a.emit(w, Rejected, ReasonBusy, func(ev *Event) { ev.RetryAfter = retry })
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
}

// queue emits Queued once per reason for a request never shown.
func (a *Arbiter) queue(e *entry, reason Reason) {
	if !e.shown && e.queued != reason {
		e.queued = reason
		a.emit(e, Queued, reason, nil)
	}
}

// retryAfter is when the surface held by best may free up for w: the end
// of best's TTL or, against a background lease of w's class, of the lease;
// zero if unknown.
func (a *Arbiter) retryAfter(w, best *entry) time.Duration {
	var at time.Time
	if best == nil {
		return 0
	}
	at = best.expires
	if s := best.surface; best.req.Class == w.req.Class && best.req.Class == Background && s.leased(best.req.App, a.now) &&
		(at.IsZero() || s.leaseUntil.Before(at)) {
		at = s.leaseUntil
	}
	if at.IsZero() || !at.After(a.now) {
		return 0
	}
	return at.Sub(a.now)
}

// apply sends the command that puts best (nil: nothing) on s, and hides
// what it replaces.
func (a *Arbiter) apply(s *surface, best *entry) {
	old := s.current
	s.current, s.lastCmd, s.everCmd = best, a.now, true
	if best != nil {
		i := slices.Index(s.waiting, best)
		s.waiting = slices.Delete(s.waiting, i, i+1)
		a.out.Commands = append(a.out.Commands, Command{Surface: s.decl.Name, Op: Show, Request: best.req})
		if best.req.Class == Background {
			s.leaseApp, s.leaseUntil = best.req.App, a.now.Add(a.cfg.BackgroundLease)
		}
		if best.shown {
			a.emit(best, Restored, "", nil)
		} else {
			best.shown = true
			a.emit(best, Shown, "", nil)
		}
	} else {
		a.out.Commands = append(a.out.Commands, Command{Surface: s.decl.Name, Op: Clear})
	}
	if old == nil {
		return
	}
	if old.gone == "" && old.req.Restore {
		// Preempted with TTL left (an expired one is gone): wait to come back.
		s.waiting = append(s.waiting, old)
		a.emit(old, Hidden, ReasonPreempted, func(ev *Event) { ev.Pending = true })
		return
	}
	reason := old.gone
	if reason == "" {
		reason = ReasonPreempted
	}
	delete(a.live, old.req.ID)
	a.emit(old, Hidden, reason, nil)
}

// wake returns when s needs its next settle: the end of its minimum
// interval if a change waits for it, the earliest TTL, and the end of a
// background lease that others wait behind. Zero: nothing.
func (a *Arbiter) wake(s *surface) time.Time {
	var t time.Time
	min := func(u time.Time) {
		if !u.IsZero() && (t.IsZero() || u.Before(t)) {
			t = u
		}
	}
	if a.booting {
		for _, w := range s.waiting {
			min(w.expires)
		}
		return t
	}
	cur := s.current
	if a.throttled(s) && a.changePending(s) {
		min(s.lastCmd.Add(s.decl.MinInterval))
	}
	if cur != nil && cur.gone == "" {
		min(cur.expires)
		if cur.req.Class == Background && len(s.waiting) > 0 && s.leased(cur.req.App, a.now) {
			min(s.leaseUntil)
		}
	}
	for _, w := range s.waiting {
		min(w.expires)
	}
	return t
}

// changePending reports whether s's device state is not what the rules
// want: what it shows is gone, or a waiting request beats it.
func (a *Arbiter) changePending(s *surface) bool {
	cur := s.current
	if cur != nil && cur.gone != "" {
		return true
	}
	for _, w := range s.waiting {
		if a.beats(w, cur) {
			return true
		}
	}
	return false
}
