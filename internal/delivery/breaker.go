package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBreakerOpen means the target's circuit breaker is open (or half-open
// with its probe in flight): with OpenFailFast nothing was sent; with
// OpenPark the delivery waited for the breaker to close until its budget
// ran out.
var ErrBreakerOpen = errors.New("delivery: circuit breaker open")

// BreakerState is a target's circuit breaker state.
type BreakerState uint8

// Breaker states.
const (
	Closed   BreakerState = iota // deliveries go through
	Open                         // deliveries fail fast or park until OpenUntil
	HalfOpen                     // one probe goes through; its result closes or reopens the breaker
)

func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("state(%d)", s)
}

// OpenMode is what a delivery does while its target's breaker is open.
type OpenMode uint8

// Open modes.
const (
	// OpenFailFast fails the delivery at once with ErrBreakerOpen.
	OpenFailFast OpenMode = iota
	// OpenPark waits (within the delivery's budget) until the breaker lets
	// it through: all parked deliveries to a target wait behind one probe,
	// so a dead target gets one request per open period, not one per
	// delivery; when the probe succeeds they all go.
	OpenPark
)

// breaker is one target's circuit breaker. Guarded by Deliverer.mu.
type breaker struct {
	state     BreakerState
	failures  int           // consecutive failed attempts while closed
	openUntil time.Time     // Open: when a probe may go
	openFor   time.Duration // the current open period; doubles on each failed probe
	probing   bool          // HalfOpen: the probe is in flight
	changed   chan struct{} // closed and replaced on every change parked deliveries wait for
}

// BreakerStatus is a snapshot of a target's breaker.
type BreakerStatus struct {
	State     BreakerState
	Failures  int
	OpenUntil time.Time
}

// Breaker returns the state of target's breaker (Closed for a target that
// never failed).
func (d *Deliverer) Breaker(target string) BreakerStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.breakers[target]
	if b == nil {
		return BreakerStatus{State: Closed}
	}
	d.refreshLocked(target, b)
	return BreakerStatus{State: b.state, Failures: b.failures, OpenUntil: b.openUntil}
}

// refreshLocked moves an open breaker whose period ended to half-open.
func (d *Deliverer) refreshLocked(target string, b *breaker) {
	if b.state == Open && !d.clock.Now().Before(b.openUntil) {
		d.transitionLocked(b, HalfOpen)
	}
}

func (d *Deliverer) transitionLocked(b *breaker, to BreakerState) {
	b.state = to
	b.probing = false
	close(b.changed)
	b.changed = make(chan struct{})
	d.metrics.breaker(to)
}

// acquire waits until the target's breaker lets a delivery through. probe
// reports that this delivery is the half-open probe and must call settle.
func (d *Deliverer) acquire(ctx context.Context, target string, mode OpenMode, deadline time.Time) (probe bool, err error) {
	for {
		d.mu.Lock()
		b := d.breakers[target]
		if b == nil {
			d.mu.Unlock()
			return false, nil
		}
		d.refreshLocked(target, b)
		switch {
		case b.state == Closed:
			d.mu.Unlock()
			return false, nil
		case b.state == HalfOpen && !b.probing:
			b.probing = true
			d.mu.Unlock()
			return true, nil
		}
		if mode == OpenFailFast {
			until := b.openUntil
			d.mu.Unlock()
			return false, fmt.Errorf("%w until %s", ErrBreakerOpen, until.UTC().Format(time.RFC3339))
		}
		now := d.clock.Now()
		wait := deadline.Sub(now)
		if b.state == Open && b.openUntil.Sub(now) < wait {
			wait = b.openUntil.Sub(now)
		}
		wake := b.changed
		d.mu.Unlock()
		if !now.Before(deadline) {
			return false, fmt.Errorf("%w: parked until the budget ran out", ErrBreakerOpen)
		}
		if err := d.clock.Sleep(ctx, wait, wake); err != nil {
			return false, err
		}
	}
}

// verdict is what an attempt says about its target's health.
type verdict uint8

const (
	healthy   verdict = iota // a response that shows the target alive (2xx, 4xx other than 429)
	unhealthy                // connect error, timeout, 5xx, 429
	neutral                  // says nothing (refused by the guard, cancelled by the caller)
)

// settle records an attempt's verdict on the target's breaker.
func (d *Deliverer) settle(target string, probe bool, v verdict, p Policy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.breakers[target]
	switch v {
	case healthy:
		if b != nil {
			if b.state != Closed {
				d.transitionLocked(b, Closed)
			}
			delete(d.breakers, target) // a healthy closed breaker needs no state
		}
	case unhealthy:
		if b == nil {
			b = &breaker{changed: make(chan struct{})}
			d.breakers[target] = b
		}
		switch {
		case probe && b.state == HalfOpen:
			b.openFor = min(2*b.openFor, p.BreakerMaxOpen)
			b.openUntil = d.clock.Now().Add(b.openFor)
			d.transitionLocked(b, Open)
		case b.state == Closed:
			b.failures++
			if b.failures >= p.BreakerThreshold {
				b.failures = 0
				b.openFor = p.BreakerOpen
				b.openUntil = d.clock.Now().Add(b.openFor)
				d.transitionLocked(b, Open)
			}
		}
	case neutral:
		if probe && b != nil && b.state == HalfOpen && b.probing {
			// Let another delivery probe.
			b.probing = false
			close(b.changed)
			b.changed = make(chan struct{})
		}
	}
}
