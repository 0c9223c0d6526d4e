package apps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/arbiter"
	"github.com/junctionhq/junction/protocol"
)

// fakeClock is an outClock whose time moves only by Advance; its timers
// fire when Advance reaches them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	ch      chan time.Time
	stopped bool
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) outTimer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{c: f, at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
		t.stopped = true
	} else {
		f.timers = append(f.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	t.stopped = true
	t.c.mu.Unlock()
}

// Advance moves the time by d and fires the timers due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, t := range f.timers {
		switch {
		case t.stopped:
		case !f.now.Before(t.at):
			t.stopped = true
			t.ch <- f.now
		default:
			kept = append(kept, t)
		}
	}
	f.timers = kept
}

// armed reports how many timers wait.
func (f *fakeClock) armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

// execRecorder records what an executor sends, as lines "device show main a/1"
// and "app a: 1 shown".
type execRecorder struct {
	lines chan string
}

func (r *execRecorder) device(c arbiter.Command, appID string) {
	if c.Op == arbiter.Show {
		r.lines <- fmt.Sprintf("device show %s %s %s %s", c.Surface, appID, c.Request.ID, c.Request.Content)
	} else {
		r.lines <- "device clear " + c.Surface
	}
}

func (r *execRecorder) app(session string, st protocol.OutputStatus) {
	l := fmt.Sprintf("app %s: %s %s %s", session, st.RequestID, st.Surface, st.Kind)
	if st.Reason != "" {
		l += " " + st.Reason
	}
	if st.RetryAfterMs > 0 {
		l += fmt.Sprintf(" retry=%d", st.RetryAfterMs)
	}
	if st.Pending {
		l += " pending"
	}
	if st.Final {
		l += " final"
	}
	r.lines <- l
}

// expect reads the next lines and compares them with want, in order.
func (r *execRecorder) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-r.lines:
			if got != w {
				t.Fatalf("line %d: got %q, want %q", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d: nothing, want %q", i, w)
		}
	}
}

// quiet checks that nothing more was sent.
func (r *execRecorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.lines:
		t.Fatalf("unexpected %q", got)
	default:
	}
}

func startExec(t *testing.T, cfg arbiter.Config) (*devExec, *fakeClock, *execRecorder) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := &execRecorder{lines: make(chan string, 256)}
	x, err := newDevExec("dev1", cfg, clk, rec.device, rec.app)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go x.run(ctx)
	t.Cleanup(func() { cancel(); <-x.done })
	return x, clk, rec
}

func request(t *testing.T, x *devExec, sid, app, id, surface string, class arbiter.Class, ttl time.Duration, restore bool) {
	t.Helper()
	err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		x.apps[sid] = app
		return a.Request(now, arbiter.Request{ID: sid + "/" + id, App: sid, Class: class, Surface: surface,
			Content: []byte(`"` + id + `"`), TTL: ttl, Restore: restore})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExecThrottleAndTTL: the executor's timer drives the arbiter: a
// change inside the minimum interval waits (queued throttle) and reaches
// the device when the fake clock reaches the interval's end; a TTL expires
// on the timer; nothing is armed once nothing is due.
func TestExecThrottleAndTTL(t *testing.T) {
	x, clk, rec := startExec(t, arbiter.Config{Surfaces: []arbiter.Surface{{Name: "main", MinInterval: 300 * time.Millisecond}}})
	request(t, x, "s1", "com.a", "1", "main", arbiter.Foreground, 0, false)
	rec.expect(t, `device show main com.a s1/1 "1"`, "app s1: 1 main shown")
	clk.Advance(100 * time.Millisecond)
	request(t, x, "s1", "com.a", "2", "main", arbiter.Foreground, time.Second, false)
	rec.expect(t, "app s1: 2 main queued throttle")
	request(t, x, "s1", "com.a", "3", "main", arbiter.Foreground, time.Second, false)
	rec.expect(t, "app s1: 2 main superseded final", "app s1: 3 main queued throttle")
	rec.quiet(t)
	clk.Advance(199 * time.Millisecond) // 1 ms before the interval ends
	rec.quiet(t)
	clk.Advance(time.Millisecond)
	rec.expect(t, `device show main com.a s1/3 "3"`, "app s1: 3 main shown", "app s1: 1 main hidden superseded final")
	// TTL: 1 s from the request (made at 100 ms; now 300 ms).
	clk.Advance(799 * time.Millisecond)
	rec.quiet(t)
	clk.Advance(time.Millisecond)
	rec.expect(t, "device clear main", "app s1: 3 main hidden expired final")
	waitFor(t, func() bool { return clk.armed() == 0 })
}

// TestExecEndDeviceGone: stopping the executor ends every live request
// with device_gone (hidden for the shown one, cleared for the waiting
// one), sends the device nothing, and later inputs fail with unavailable.
func TestExecEndDeviceGone(t *testing.T) {
	x, _, rec := startExec(t, arbiter.Config{Surfaces: []arbiter.Surface{{Name: "main"}}, Booting: false})
	request(t, x, "s1", "com.a", "1", "main", arbiter.System, 0, false)
	rec.expect(t, `device show main com.a s1/1 "1"`, "app s1: 1 main shown")
	request(t, x, "s2", "com.b", "x", "main", arbiter.Background, 0, true)
	rec.expect(t, "app s2: x main queued busy")
	x.stop(ReasonDeviceGone)
	<-x.done
	got := []string{<-rec.lines, <-rec.lines}
	slicesSort(got)
	want := []string{"app s1: 1 main hidden device_gone final", "app s2: x main cleared device_gone final"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	rec.quiet(t)
	err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output { return arbiter.Output{} })
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnavailable {
		t.Fatalf("input after stop: %v, want unavailable", err)
	}
}

// TestExecBootAndRestore: requests queue while the device boots (each
// hears queued boot); boot done shows the best; a preempted restore
// request comes back when its preemptor is withdrawn (the session ended).
func TestExecBootAndRestore(t *testing.T) {
	x, _, rec := startExec(t, arbiter.Config{Surfaces: []arbiter.Surface{{Name: "main"}}, Booting: true})
	request(t, x, "fg", "com.fg", "a", "main", arbiter.Foreground, 0, true)
	rec.expect(t, "app fg: a main queued boot")
	request(t, x, "bg", "com.bg", "b", "main", arbiter.Background, 0, false)
	rec.expect(t, "app bg: b main queued boot")
	if err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output { return a.BootDone(now) }); err != nil {
		t.Fatal(err)
	}
	rec.expect(t, `device show main com.fg fg/a "a"`, "app fg: a main shown", "app bg: b main rejected busy final")
	request(t, x, "sys", "com.sys", "s", "main", arbiter.System, 0, false)
	rec.expect(t, `device show main com.sys sys/s "s"`, "app sys: s main shown", "app fg: a main hidden preempted pending")
	if err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		delete(x.apps, "sys")
		return a.AppEnded(now, "sys")
	}); err != nil {
		t.Fatal(err)
	}
	rec.expect(t, `device show main com.fg fg/a "a"`, "app fg: a main restored", "app sys: s main hidden cleared final")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func slicesSort(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}
