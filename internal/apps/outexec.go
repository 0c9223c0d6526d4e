package apps

import (
	"context"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/arbiter"
	"github.com/junctionhq/junction/protocol"
)

// The device executor of the output arbiter (docs/apps-arbiter.md, "The
// gateway side"): one goroutine per device owns the device's
// arbiter.Arbiter and its one timer. Every input (a request, a cancel, the
// end of a session or of the boot phase, a timer firing) runs on that
// goroutine in arrival order; its commands go to the device and its
// events to the apps, in the arbiter's order.

// outClock is the executors' clock; tests inject a fake one.
type outClock interface {
	Now() time.Time
	NewTimer(d time.Duration) outTimer
}

// outTimer is one timer of an outClock.
type outTimer interface {
	C() <-chan time.Time
	Stop()
}

// realClock is the service's clock (Deps.Now) with the runtime's timers.
type realClock struct{ now func() time.Time }

func (c realClock) Now() time.Time { return c.now() }

func (c realClock) NewTimer(d time.Duration) outTimer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop()               { t.t.Stop() }

// ReasonDeviceGone replaces cleared in the events of requests ended
// because their device's connection closed or it declared its surfaces
// again from another connection.
const ReasonDeviceGone = "device_gone"

// outInput is one input of an executor, run on its goroutine.
type outInput struct {
	fn    func(a *arbiter.Arbiter, now time.Time) arbiter.Output
	reply chan struct{} // closed once fn's output is delivered
}

// devExec owns one device's arbiter.
type devExec struct {
	device string
	in     chan outInput // bounded; senders wait (Service.outputs submits)
	quit   chan string   // the reason the executor must end ("" or ReasonDeviceGone); buffered 1
	done   chan struct{} // closed when run returns

	// Owned by run's goroutine (and by the caller of newDevExec before run).
	arb      *arbiter.Arbiter
	clock    outClock
	toDevice func(arbiter.Command, string) // the command and the app id of its request
	toApp    func(session string, st protocol.OutputStatus)
	apps     map[string]string // session id → app id, of the sessions that sent requests and have not ended

	// The record of outcomes (outlog.go), when set: outcomes is set before
	// run; meta (by arbiter request id, until the request's final event)
	// and dup (a request the arbiter is about to reject as a duplicate of
	// a live id) are owned by run's goroutine.
	outcomes *outcomeLog
	meta     map[string]outMeta
	dup      *outMeta
}

// outMeta is what the record needs of a request that the arbiter's events
// do not carry.
type outMeta struct {
	id       string // the arbiter's request id
	app      string // the app id
	priority string
	force    bool
	at       time.Time // when the gateway took it
}

// execInputs bounds the inputs waiting for one executor.
const execInputs = 64

func newDevExec(device string, cfg arbiter.Config, clock outClock, toDevice func(arbiter.Command, string),
	toApp func(string, protocol.OutputStatus)) (*devExec, error) {
	a, err := arbiter.New(cfg)
	if err != nil {
		return nil, err
	}
	return &devExec{device: device, in: make(chan outInput, execInputs), quit: make(chan string, 1), done: make(chan struct{}),
		arb: a, clock: clock, toDevice: toDevice, toApp: toApp, apps: map[string]string{}, meta: map[string]outMeta{}}, nil
}

// run is the executor's goroutine; it returns when ctx ends or stop is
// called, ending every live request first.
func (x *devExec) run(ctx context.Context) {
	defer close(x.done)
	var timer outTimer
	var wake <-chan time.Time
	arm := func(next time.Time) {
		if timer != nil {
			timer.Stop()
			timer, wake = nil, nil
		}
		if next.IsZero() {
			return
		}
		timer = x.clock.NewTimer(max(next.Sub(x.clock.Now()), 0))
		wake = timer.C()
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case in := <-x.in:
			out := in.fn(x.arb, x.clock.Now())
			x.deliver(out, "", true)
			arm(out.Next)
			close(in.reply)
		case <-wake:
			timer, wake = nil, nil
			out := x.arb.Tick(x.clock.Now())
			x.deliver(out, "", true)
			arm(out.Next)
		case reason := <-x.quit:
			x.end(reason)
			return
		case <-ctx.Done():
			x.end(ReasonDeviceGone)
			return
		}
	}
}

// end withdraws every session's requests: the apps hear their last event
// (with reason instead of cleared when set); the device is told nothing
// (it is gone, or starts again from clear surfaces).
func (x *devExec) end(reason string) {
	x.deliver(x.arb.Reset(x.clock.Now()), reason, false)
	clear(x.apps)
	clear(x.meta)
}

// deliver sends an output's commands to the device (when toDevice is set)
// and its events to their apps; reason, when set, replaces cleared.
func (x *devExec) deliver(out arbiter.Output, reason string, device bool) {
	if device {
		for _, c := range out.Commands {
			x.toDevice(c, x.apps[c.Request.App])
		}
	}
	for _, ev := range out.Events {
		st := statusOf(ev, reason)
		x.record(ev, st)
		x.toApp(ev.App, st)
	}
	x.dup = nil
}

// noteRequest keeps what the record needs of a request about to be given
// to the arbiter (on run's goroutine, inside the request's input).
func (x *devExec) noteRequest(r arbiter.Request, appID, priority string, now time.Time) {
	if x.outcomes == nil {
		return
	}
	m := outMeta{id: r.ID, app: appID, priority: priority, force: r.Force, at: now}
	if _, live := x.meta[r.ID]; live {
		x.dup = &m // rejected duplicate: the live request keeps its own
		return
	}
	x.meta[r.ID] = m
}

// record adds a terminal outcome to the record, or notes when a shown
// request left the device for good.
func (x *devExec) record(ev arbiter.Event, st protocol.OutputStatus) {
	if x.outcomes == nil {
		return
	}
	m, dup := x.meta[ev.Request], false
	if x.dup != nil && ev.Kind == arbiter.Rejected && x.dup.id == ev.Request {
		m, dup, x.dup = *x.dup, true, nil
	}
	switch {
	case ev.Kind.Terminal():
		x.outcomes.add(x.device, protocol.OutputOutcome{AppID: m.app, SessionID: ev.App, RequestID: st.RequestID, Surface: ev.Surface,
			Priority: m.priority, Outcome: st.Kind, Reason: st.Reason, RetryAfterMs: st.RetryAfterMs, Force: m.force,
			RequestedAt: m.at, DecidedAt: ev.At})
	case ev.Kind == arbiter.Hidden && !ev.Pending:
		x.outcomes.ended(x.device, ev.App, st.RequestID, ev.At, st.Reason)
	}
	if ev.Final() && !dup {
		delete(x.meta, ev.Request)
	}
}

// statusOf is the wire form of an arbiter event; the request id loses its
// session prefix.
func statusOf(ev arbiter.Event, reason string) protocol.OutputStatus {
	st := protocol.OutputStatus{RequestID: strings.TrimPrefix(ev.Request, ev.App+"/"), Surface: ev.Surface,
		Kind: ev.Kind.String(), Reason: string(ev.Reason), Pending: ev.Pending, Final: ev.Final()}
	if ev.RetryAfter > 0 {
		st.RetryAfterMs = max(ev.RetryAfter.Milliseconds(), 1)
	}
	if reason != "" && (ev.Kind == arbiter.Cleared || ev.Kind == arbiter.Hidden && ev.Reason == arbiter.ReasonCleared) {
		st.Reason = reason
	}
	return st
}

// do runs fn on the executor and waits until its output is delivered. It
// fails when ctx ends or the executor has ended.
func (x *devExec) do(ctx context.Context, fn func(a *arbiter.Arbiter, now time.Time) arbiter.Output) error {
	in := outInput{fn: fn, reply: make(chan struct{})}
	select {
	case x.in <- in:
	case <-x.done:
		return errExecGone()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-in.reply:
		return nil
	case <-x.done:
		return errExecGone()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the executor with reason (see end); it returns at once.
func (x *devExec) stop(reason string) {
	select {
	case x.quit <- reason:
	default: // already stopping
	}
}

func errExecGone() error {
	return protocol.Errorf(protocol.CodeUnavailable, "the device's surfaces are gone (it disconnected or declared them again)").
		WithDetail("reason", ReasonDeviceGone)
}
