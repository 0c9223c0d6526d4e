package appsdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/junctionhq/junction/protocol"
)

// Outputs (docs/apps.md, "Outputs"): a request for content on one of the
// device's surfaces, and the output.status events of its life.

// MaxLiveOutputs bounds the output requests of one session whose final
// output.status has not arrived yet; Output refuses more.
const MaxLiveOutputs = 256

// outputEventBuffer is the capacity of OutputHandle.Events; when the
// reader falls behind, the oldest unread event is dropped.
const outputEventBuffer = 16

// ErrOutputsFull: the session has MaxLiveOutputs requests without a final
// event.
var ErrOutputsFull = errors.New("appsdk: too many live output requests on the session")

// OutputHandle follows one output request: its output.status events until
// the final one. Its methods are safe for concurrent use.
type OutputHandle struct {
	s        *Session
	id       string                     // set once: the request's id
	surface  string                     // set once
	priority string                     // set once Output returns: the class Junction stamped
	events   chan protocol.OutputStatus // written and closed under mu by the session's event goroutine
	done     chan struct{}              // closed with events: the final event arrived, or the handle ended

	mu      sync.Mutex
	ended   bool                  // guarded by mu: events and done are closed
	last    protocol.OutputStatus // guarded by mu: the latest event
	outcome protocol.OutputStatus // guarded by mu: the terminal outcome, Kind "" until it arrives
	err     error                 // guarded by mu: the session ended before the final event
}

// Output requests req.Content on req.Surface of the session's device
// (output.request) and returns the request's handle once Junction accepted
// it. Without req.ID the SDK makes one (output.status events may arrive
// before the answer: the handle is ready for them). A refusal before the
// arbiter is the error (403 without the output scope, 503 unavailable when
// the device declared no surfaces, 409 when the session is not running,
// 400 for bad params); everything after comes as events on the handle,
// rejected included. An id the session still follows a request of is
// refused with conflict before it is sent, and so is a request beyond
// MaxLiveOutputs (ErrOutputsFull).
func (s *Session) Output(ctx context.Context, req protocol.OutputRequestParams) (*OutputHandle, error) {
	if req.ID == "" {
		req.ID = "o" + strconv.FormatUint(rand.Uint64(), 36)
	}
	h := &OutputHandle{
		s: s, id: req.ID, surface: req.Surface,
		events: make(chan protocol.OutputStatus, outputEventBuffer),
		done:   make(chan struct{}),
	}
	s.mu.Lock()
	switch {
	case s.outputs[req.ID] != nil:
		s.mu.Unlock()
		return nil, fmt.Errorf("appsdk: output %s: %w", req.ID,
			protocol.Errorf(protocol.CodeConflict, "this session has a live request %q", req.ID))
	case len(s.outputs) >= MaxLiveOutputs:
		s.mu.Unlock()
		return nil, fmt.Errorf("appsdk: output %s: %w", req.ID, ErrOutputsFull)
	}
	s.outputs[req.ID] = h
	s.mu.Unlock()
	var acc protocol.OutputAccepted
	if err := s.Call(ctx, "output.request", req, &acc); err != nil {
		s.dropOutput(h)
		return nil, fmt.Errorf("appsdk: output.request %s: %w", req.ID, err)
	}
	h.mu.Lock()
	h.priority = acc.Priority
	h.mu.Unlock()
	return h, nil
}

// ID returns the request's id.
func (h *OutputHandle) ID() string { return h.id }

// Surface returns the surface requested.
func (h *OutputHandle) Surface() string { return h.surface }

// Priority returns the priority class Junction stamped on the request.
func (h *OutputHandle) Priority() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.priority
}

// Events returns the request's output.status events in arrival order; it
// is closed after the final one (or when the session ends first). It
// holds the latest 16 unread events: a reader that falls behind misses the
// oldest (Outcome and Last keep what matters).
func (h *OutputHandle) Events() <-chan protocol.OutputStatus { return h.events }

// Done is closed when the final event arrived, or when the session ended
// before it (Err).
func (h *OutputHandle) Done() <-chan struct{} { return h.done }

// Outcome returns the request's one terminal outcome (Kind shown,
// superseded, rejected, expired or cleared), false until it arrived.
func (h *OutputHandle) Outcome() (protocol.OutputStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outcome, h.outcome.Kind != ""
}

// Last returns the latest event (Final set on the last one).
func (h *OutputHandle) Last() protocol.OutputStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Err returns why the handle ended without a final event (the session's
// Err), nil otherwise.
func (h *OutputHandle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Wait waits for the final event and returns it; or the session's end
// (Err), or ctx's.
func (h *OutputHandle) Wait(ctx context.Context) (protocol.OutputStatus, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return h.Last(), fmt.Errorf("appsdk: output %s: wait: %w", h.id, ctx.Err())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.err
}

// Cancel withdraws the request (output.cancel); its last event (cleared,
// or hidden with cleared) follows on the handle. found is false when the
// request had ended already.
func (h *OutputHandle) Cancel(ctx context.Context) (found bool, err error) {
	var res protocol.OutputCancelled
	if err := h.s.Call(ctx, "output.cancel", protocol.OutputCancelParams{RequestID: h.id}, &res); err != nil {
		return false, fmt.Errorf("appsdk: output.cancel %s: %w", h.id, err)
	}
	return res.Found, nil
}

// deliver records one event; the final one ends the handle. It runs on
// the session's event goroutine.
func (h *OutputHandle) deliver(st protocol.OutputStatus) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return true
	}
	h.last = st
	switch st.Kind {
	case "shown", "superseded", "rejected", "expired", "cleared":
		if h.outcome.Kind == "" {
			h.outcome = st
		}
	}
	select {
	case h.events <- st:
	default:
		// Full: drop the oldest unread. Only this goroutine sends, under
		// mu, so the room made is still there.
		select {
		case <-h.events:
		default:
		}
		h.events <- st
	}
	if st.Final {
		h.endLocked(nil)
	}
	return st.Final
}

func (h *OutputHandle) endLocked(err error) {
	if h.ended {
		return
	}
	h.ended, h.err = true, err
	close(h.events)
	close(h.done)
}

// routeOutput hands an output.status event to its request's handle.
func (s *Session) routeOutput(f *protocol.Frame) {
	var st protocol.OutputStatus
	if err := json.Unmarshal(f.Data, &st); err != nil {
		s.log.Warn("appsdk: output.status does not decode", "err", err)
		return
	}
	s.mu.Lock()
	h := s.outputs[st.RequestID]
	s.mu.Unlock()
	if h != nil && h.deliver(st) {
		s.dropOutput(h)
	}
}

// dropOutput forgets h, if it still is the handle of its id.
func (s *Session) dropOutput(h *OutputHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outputs[h.id] == h {
		delete(s.outputs, h.id)
	}
}

// endOutputs ends the handles still waiting when the session's handle
// ends: their events would come to another connection, or never.
func (s *Session) endOutputs(err error) {
	if err == nil {
		err = ErrDetached
	}
	s.mu.Lock()
	hs := make([]*OutputHandle, 0, len(s.outputs))
	for _, h := range s.outputs {
		hs = append(hs, h)
	}
	clear(s.outputs)
	s.mu.Unlock()
	for _, h := range hs {
		h.mu.Lock()
		h.endLocked(err)
		h.mu.Unlock()
	}
}
