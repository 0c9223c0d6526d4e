package hub

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recordedCall records when its timeout ended it.
type recordedCall struct {
	name  string
	start time.Time
	log   *timeoutLog
}

func (c *recordedCall) timedOut() { c.log.add(c.name, time.Since(c.start)) }

type timeoutLog struct {
	mu    sync.Mutex
	ended []string // guarded by mu: "name@elapsed"
}

func (l *timeoutLog) add(name string, after time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = append(l.ended, name+"@"+after.String())
}

func (l *timeoutLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ended)
}

func TestRPCTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ts rpcTimeouts
		log := &timeoutLog{}
		start := time.Now()
		call := func(name string) (*recordedCall, *timeoutEntry) {
			return &recordedCall{name: name, start: start, log: log}, &timeoutEntry{}
		}
		a, ae := call("a")
		b, be := call("b")
		c, ce := call("c")
		d, de := call("d")
		ts.add(ae, a, 10*time.Millisecond)
		ts.add(ce, c, 20*time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		ts.add(be, b, 10*time.Millisecond)
		ts.add(de, d, 10*time.Millisecond)
		ts.remove(ae) // the head of its queue: b is next, at 15 ms
		ts.remove(de)
		ts.remove(de) // twice: a no-op
		if n := queuesOf(&ts); n != 2 {
			t.Fatalf("got %d queues, want 2 (10 ms and 20 ms)", n)
		}

		time.Sleep(time.Second)
		synctest.Wait()
		want := []string{"b@15ms", "c@20ms"}
		if got := log.get(); !slices.Equal(got, want) {
			t.Errorf("got calls ended %v, want %v", got, want)
		}
		ts.remove(be) // ended already: a no-op
		if n := queuesOf(&ts); n != 0 {
			t.Errorf("got %d queues left, want 0 (dropped once empty)", n)
		}

		// A queue dropped is made again; one whose calls all ended
		// before their deadline is dropped at once, and ends nothing.
		e, ee := call("e")
		f, fe := call("f")
		ts.add(ee, e, 10*time.Millisecond)
		ts.add(fe, f, 30*time.Millisecond)
		ts.remove(fe)
		if n := queuesOf(&ts); n != 1 {
			t.Errorf("got %d queues, want 1 (the 30 ms one dropped at once)", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := log.get(); len(got) != 3 || got[2] != "e@1.015s" {
			t.Errorf("got calls ended %v, want e ended at 1.015s last", got)
		}
	})
}

func queuesOf(ts *rpcTimeouts) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.queues)
}

// TestRPCTimeoutsAllocate checks that queueing a call's timeout and
// removing it allocate nothing once its queue exists: one less timer and
// callback per relayed call.
func TestRPCTimeoutsAllocate(t *testing.T) {
	var ts rpcTimeouts
	log := &timeoutLog{}
	held := &timeoutEntry{} // keeps the queue
	ts.add(held, &recordedCall{name: "held", log: log}, time.Hour)
	defer ts.remove(held)
	c := &recordedCall{name: "c", log: log}
	var e timeoutEntry
	n := testing.AllocsPerRun(100, func() {
		ts.add(&e, c, time.Hour)
		ts.remove(&e)
	})
	if n != 0 {
		t.Errorf("got %v allocations per add and remove, want 0", n)
	}
}
