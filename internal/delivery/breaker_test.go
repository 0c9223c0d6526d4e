package delivery

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBreakerFailFast: consecutive failed attempts open the breaker; while
// open, deliveries fail at once without a request; after the open period
// one probe goes: a failed probe reopens it for twice as long, a good one
// closes it.
func TestBreakerFailFast(t *testing.T) {
	e := newEnv(true)
	var healthy atomic.Bool
	rc := newReceiver(t, e.clock, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if healthy.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(503)
	})
	p := Policy{MaxAttempts: 1, BreakerThreshold: 3, BreakerOpen: 10 * time.Second}
	deliver := func() (Result, error) { return e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)}) }
	for i := range 3 {
		if _, err := deliver(); !errors.Is(err, ErrExhausted) {
			t.Fatalf("delivery %d: got %v, want ErrExhausted", i+1, err)
		}
	}
	st := e.d.Breaker("com.example.app")
	if st.State != Open || !st.OpenUntil.Equal(e.clock.Now().Add(10*time.Second)) {
		t.Fatalf("after 3 failures: got %+v, want open for 10s", st)
	}
	res, err := deliver()
	var de *Error
	if !errors.Is(err, ErrBreakerOpen) || !errors.As(err, &de) || de.Stage != StageBreaker || res.Outcome != OutcomeBreaker || res.Attempts != 0 {
		t.Fatalf("while open: got %+v, %v; want ErrBreakerOpen at once", res, err)
	}
	if n := len(rc.received()); n != 3 {
		t.Fatalf("the target got %d requests, want 3 (none while open)", n)
	}
	if log := e.log.List("com.example.app", 1); log[0].Stage != StageBreaker {
		t.Errorf("log: got %+v, want a breaker entry", log[0])
	}

	e.clock.Advance(10 * time.Second)
	if st := e.d.Breaker("com.example.app").State; st != HalfOpen {
		t.Fatalf("after the open period: got %v, want half_open", st)
	}
	if _, err := deliver(); !errors.Is(err, ErrExhausted) { // the probe fails
		t.Fatalf("failed probe: got %v", err)
	}
	st = e.d.Breaker("com.example.app")
	if st.State != Open || !st.OpenUntil.Equal(e.clock.Now().Add(20*time.Second)) {
		t.Fatalf("after a failed probe: got %+v, want open for 20s", st)
	}
	e.clock.Advance(20 * time.Second)
	healthy.Store(true)
	if _, err := deliver(); err != nil {
		t.Fatalf("good probe: %v", err)
	}
	if st := e.d.Breaker("com.example.app").State; st != Closed {
		t.Fatalf("after a good probe: got %v, want closed", st)
	}
	if n := e.counter(t, "junction_delivery_breaker_transitions_total", "to", "open"); n != 2 {
		t.Errorf("open transitions: got %v, want 2", n)
	}
	if n := e.counter(t, "junction_delivery_total", "outcome", "breaker"); n != 1 {
		t.Errorf("breaker outcomes: got %v, want 1", n)
	}
	// Other targets are not affected by this one's breaker.
	if st := e.d.Breaker("another.app").State; st != Closed {
		t.Errorf("another target: %v", st)
	}
}

// TestBreakerParkCoalesces: parked deliveries send nothing while the
// breaker is open, wait behind one probe when it half-opens, and all go
// once the probe closes it.
func TestBreakerParkCoalesces(t *testing.T) {
	e := newEnv(false)
	var healthy atomic.Bool
	releaseProbe := make(chan struct{})
	var probing atomic.Bool
	rc := newReceiver(t, e.clock, func(n int, w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		if n == 2 { // the probe: held until the test saw the others parked
			probing.Store(true)
			<-releaseProbe
		}
		w.WriteHeader(200)
	})
	p := Policy{MaxAttempts: 1, BreakerThreshold: 1, BreakerOpen: 10 * time.Second, WhenOpen: OpenPark, Budget: time.Minute}
	if _, err := e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("first delivery: got %v", err)
	}
	if st := e.d.Breaker("com.example.app").State; st != Open {
		t.Fatalf("got %v, want open", st)
	}
	healthy.Store(true)

	const parked = 5
	var wg sync.WaitGroup
	errs := make(chan error, parked)
	for range parked {
		wg.Go(func() {
			_, err := e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)})
			errs <- err
		})
	}
	eventually(t, "every delivery to park", func() bool { return e.clock.sleeping() == parked })
	if n := len(rc.received()); n != 1 {
		t.Fatalf("the target got %d requests while open, want only the first", n)
	}
	e.clock.Advance(10 * time.Second) // half-open: one probe goes, the others park behind it
	eventually(t, "the probe to arrive and the others to park", func() bool {
		return probing.Load() && e.clock.sleeping() == parked-1
	})
	if n := len(rc.received()); n != 2 {
		t.Fatalf("the target got %d requests at half-open, want 2 (one probe)", n)
	}
	close(releaseProbe)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("parked delivery: %v", err)
		}
	}
	if n := len(rc.received()); n != 1+parked {
		t.Errorf("the target got %d requests, want %d", n, 1+parked)
	}
	if st := e.d.Breaker("com.example.app").State; st != Closed {
		t.Errorf("got %v, want closed", st)
	}
}

// TestBreakerParkBudget: a parked delivery gives up when its budget runs
// out before the breaker lets it through.
func TestBreakerParkBudget(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(503))
	p := Policy{MaxAttempts: 1, BreakerThreshold: 1, BreakerOpen: time.Minute, WhenOpen: OpenPark, Budget: 5 * time.Second}
	e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)})
	res, err := e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)})
	if !errors.Is(err, ErrBreakerOpen) || res.Attempts != 0 || len(rc.received()) != 1 {
		t.Fatalf("got %+v, %v, %d requests; want ErrBreakerOpen without a request", res, err, len(rc.received()))
	}
	if got := e.clock.sleeps(); len(got) != 1 || got[0] != 5*time.Second {
		t.Errorf("parked for %v, want the 5s budget", got)
	}
}

// TestBreakerCountsConsecutiveFailures: a success in between resets the
// count; a 4xx shows the target alive.
func TestBreakerCountsConsecutiveFailures(t *testing.T) {
	e := newEnv(true)
	codes := []int{503, 503, 200, 503, 404, 503, 503}
	rc := newReceiver(t, e.clock, statuses(codes...))
	p := Policy{MaxAttempts: 1, BreakerThreshold: 3}
	for range codes {
		e.d.Deliver(t.Context(), rc.target(p), Message{Body: []byte(`{}`)})
	}
	if st := e.d.Breaker("com.example.app"); st.State != Closed || st.Failures != 2 {
		t.Fatalf("got %+v, want closed with 2 consecutive failures", st)
	}
}
