package arbiter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The property tests drive an Arbiter with arbitrary input sequences and
// check, after every input, the rules that must hold whatever the input:
//
//   - every request's events follow its life: Queued*, then exactly one
//     terminal event; after Shown, Hidden (Pending) / Restored pairs and one
//     final Hidden; nothing after its final event;
//   - the device, replaying the commands, shows on each surface exactly the
//     request whose events say it is shown (so never two at once);
//   - two commands to a surface are at least its minimum interval apart
//     unless the second shows a forced request;
//   - nothing is shown after its TTL; a shown request leaves the device at
//     most one minimum interval after its TTL; a waiting one is ended at its
//     TTL; Next is always in the future;
//   - once boot is over, every app has ended and the Arbiter was ticked at
//     each Next until none was left, every request had its final event and
//     every surface is clear.

var propSurfaces = []Surface{{"main", 300 * time.Millisecond}, {"overlay", 0}, {"led", 100 * time.Millisecond}}

// propApps: the gateway stamps one class per app.
var propApps = []struct {
	name  string
	class Class
}{{"sys", System}, {"fg", Foreground}, {"bgA", Background}, {"bgB", Background}, {"amb", Ambient}}

var propSteps = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	300 * time.Millisecond, 700 * time.Millisecond, 2 * time.Second, 10500 * time.Millisecond}
var propTTLs = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 15 * time.Second}

type reqState uint8

const (
	stNew reqState = iota
	stWaiting
	stOnDevice
	stHiddenPending
	stFinal
)

type checker struct {
	t        testing.TB
	a        *Arbiter
	now      time.Time
	next     time.Time
	reqs     map[string]Request
	issued   map[string]time.Time
	state    map[string]reqState
	ids      []string
	device   map[string]string // surface → request id shown ("" none)
	lastCmd  map[string]time.Time
	interval map[string]time.Duration
	booting  bool
	n        int
}

func newChecker(t testing.TB, booting bool) *checker {
	a, err := New(Config{Surfaces: propSurfaces, Booting: booting, BackgroundLease: time.Second, MaxWaiting: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{t: t, a: a, now: t0, reqs: map[string]Request{}, issued: map[string]time.Time{}, state: map[string]reqState{},
		device: map[string]string{}, lastCmd: map[string]time.Time{}, interval: map[string]time.Duration{}, booting: booting}
	for _, s := range propSurfaces {
		c.interval[s.Name] = s.MinInterval
	}
	return c
}

// advance moves the clock to t, ticking at every Next on the way.
func (c *checker) advance(t time.Time) {
	for i := 0; !c.next.IsZero() && !c.next.After(t); i++ {
		if i > 1000 {
			c.t.Fatalf("more than 1000 wake-ups before %v", t)
		}
		c.now = c.next
		c.check("tick", c.a.Tick(c.now))
	}
	c.now = t
}

func (c *checker) fail(input string, format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("input %d (%s) at %v: %s", c.n, input, c.now.Sub(t0), fmt.Sprintf(format, args...))
}

func (c *checker) check(input string, o Output) {
	c.t.Helper()
	c.n++
	for _, cmd := range o.Commands {
		if last, ok := c.lastCmd[cmd.Surface]; ok && c.now.Sub(last) < c.interval[cmd.Surface] && !(cmd.Op == Show && cmd.Request.Force) {
			c.fail(input, "%s %s %v after the previous command, interval %v", cmd.Surface, cmd.Op, c.now.Sub(last), c.interval[cmd.Surface])
		}
		c.lastCmd[cmd.Surface] = c.now
		if c.booting {
			c.fail(input, "a command while booting")
		}
		switch cmd.Op {
		case Show:
			r := cmd.Request
			if r.TTL > 0 && !c.now.Before(c.issued[r.ID].Add(r.TTL)) {
				c.fail(input, "shows %s after its TTL", r.ID)
			}
			c.device[cmd.Surface] = r.ID
		case Clear:
			c.device[cmd.Surface] = ""
		default:
			c.fail(input, "bad op %v", cmd.Op)
		}
	}
	for _, e := range o.Events {
		st, known := c.state[e.Request]
		if !known {
			c.fail(input, "event %v for unknown request %s", e.Kind, e.Request)
		}
		bad := func() {
			c.fail(input, "%s: %v (reason %q, pending %v) in state %d", e.Request, e.Kind, e.Reason, e.Pending, st)
		}
		switch e.Kind {
		case Queued:
			if st != stNew && st != stWaiting {
				bad()
			}
			c.state[e.Request] = stWaiting
		case Shown:
			if st != stNew && st != stWaiting {
				bad()
			}
			c.state[e.Request] = stOnDevice
		case Superseded, Rejected, Expired, Cleared:
			if st != stNew && st != stWaiting {
				bad()
			}
			c.state[e.Request] = stFinal
		case Hidden:
			if st != stOnDevice && !(st == stHiddenPending && !e.Pending) {
				bad()
			}
			if e.Pending {
				c.state[e.Request] = stHiddenPending
			} else {
				c.state[e.Request] = stFinal
			}
		case Restored:
			if st != stHiddenPending {
				bad()
			}
			c.state[e.Request] = stOnDevice
		default:
			bad()
		}
		if e.Final() != (c.state[e.Request] == stFinal) {
			c.fail(input, "%s: Final() = %v after %v", e.Request, e.Final(), e.Kind)
		}
	}
	// The device and the events agree, surface by surface.
	onDevice := map[string]string{}
	for id, st := range c.state {
		if st == stNew {
			c.fail(input, "%s got no event", id)
		}
		r := c.reqs[id]
		if st == stOnDevice {
			if prev := onDevice[r.Surface]; prev != "" {
				c.fail(input, "%s and %s both shown on %s", prev, id, r.Surface)
			}
			onDevice[r.Surface] = id
			if r.TTL > 0 && c.now.After(c.issued[id].Add(r.TTL+c.interval[r.Surface])) {
				c.fail(input, "%s still shown %v after its TTL", id, c.now.Sub(c.issued[id].Add(r.TTL)))
			}
		}
		if (st == stWaiting || st == stHiddenPending) && r.TTL > 0 && !c.now.Before(c.issued[id].Add(r.TTL)) {
			c.fail(input, "%s still waiting at its TTL", id)
		}
	}
	for _, s := range propSurfaces {
		if c.device[s.Name] != onDevice[s.Name] {
			c.fail(input, "device shows %q on %s, events say %q", c.device[s.Name], s.Name, onDevice[s.Name])
		}
	}
	if !o.Next.IsZero() && !o.Next.After(c.now) {
		c.fail(input, "Next %v is not after now", o.Next.Sub(t0))
	}
	c.next = o.Next
}

// run decodes data into inputs, six bytes each, and checks them.
func (c *checker) run(data []byte) {
	for len(data) >= 6 {
		b := data[:6]
		data = data[6:]
		c.advance(c.now.Add(propSteps[int(b[1])%len(propSteps)]))
		app := propApps[int(b[2])%len(propApps)]
		surf := propSurfaces[int(b[3])%len(propSurfaces)].Name
		switch b[0] % 8 {
		case 0, 1, 2, 3:
			id := fmt.Sprintf("r%d", len(c.ids)+1)
			r := Request{ID: id, App: app.name, Class: app.class, Surface: surf, TTL: propTTLs[int(b[4])%len(propTTLs)],
				Restore: b[5]&1 != 0, Force: b[5]&2 != 0}
			if b[5]&4 != 0 && b[5]&8 != 0 {
				r.Surface = "nowhere"
			}
			c.ids = append(c.ids, id)
			c.reqs[id], c.issued[id], c.state[id] = r, c.now, stNew
			c.check("request "+id, c.a.Request(c.now, r))
		case 4:
			if len(c.ids) > 0 {
				id := c.ids[int(b[4])%len(c.ids)]
				c.check("cancel "+id, c.a.Cancel(c.now, c.reqs[id].App, id))
			}
		case 5:
			c.check("clear "+app.name+" "+surf, c.a.Clear(c.now, app.name, surf))
		case 6:
			c.check("ended "+app.name, c.a.AppEnded(c.now, app.name))
		case 7:
			if c.booting {
				c.booting = false
				c.check("boot done", c.a.BootDone(c.now))
			} else {
				c.check("tick", c.a.Tick(c.now))
			}
		}
	}
	// Wind down: boot ends, every app ends, tick until nothing is due.
	if c.booting {
		c.booting = false
		c.check("boot done", c.a.BootDone(c.now))
	}
	for _, app := range propApps {
		c.check("ended "+app.name, c.a.AppEnded(c.now, app.name))
	}
	c.advance(c.now.Add(time.Hour))
	if !c.next.IsZero() {
		c.t.Fatalf("still due at %v after everything ended", c.next.Sub(t0))
	}
	for id, st := range c.state {
		if st != stFinal {
			c.t.Fatalf("%s has no final event after everything ended (state %d)", id, st)
		}
	}
	for s, id := range c.device {
		if id != "" {
			c.t.Fatalf("%s still shows %s after everything ended", s, id)
		}
	}
}

func TestPropertyRandomSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 7))
	for i := range 3000 {
		data := make([]byte, 6*(1+rng.IntN(60)))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			newChecker(t, i%3 == 0).run(data)
		})
	}
}

func FuzzArbiter(f *testing.F) {
	f.Add(true, []byte{0, 0, 1, 0, 3, 1, 0, 1, 0, 0, 2, 0, 7, 6, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0})
	f.Add(false, []byte{1, 0, 2, 0, 0, 0, 2, 5, 3, 0, 0, 1, 0, 1, 0, 0, 4, 3, 7, 6, 0, 0, 0, 0})
	f.Add(false, []byte{3, 0, 1, 1, 2, 3, 2, 1, 0, 1, 3, 0, 6, 2, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, booting bool, data []byte) {
		if len(data) > 6*200 {
			return
		}
		newChecker(t, booting).run(data)
	})
}
