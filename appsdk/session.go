package appsdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// ErrDetached ends a session whose handle was closed (Session.Close,
// App.Close, or a newer handle of the same session): the session goes on
// running on Junction and can be reattached.
var ErrDetached = errors.New("appsdk: session detached")

// ErrSuperseded ends a session whose connection was closed with 4009:
// another connection reattached to it (another instance of the backend,
// or a later run of this one).
var ErrSuperseded = errors.New("appsdk: another connection reattached to the session (4009)")

// StoppedError ends a session that stopped on Junction: app.stopped on its
// connection then close 1000, the session.stop webhook, a stop by
// Session.Stop, or an attach refused because the session had stopped. A
// stopped session never comes back.
type StoppedError struct {
	Reason string // the stop reason (protocol.Stop*); empty when Junction did not say
	Err    error  // the refusal that revealed it, or nil
}

// Error implements error.
func (e *StoppedError) Error() string {
	if e.Reason == "" {
		return "appsdk: session stopped"
	}
	return "appsdk: session stopped: " + e.Reason
}

// Unwrap returns the refusal that revealed the stop, if any.
func (e *StoppedError) Unwrap() error { return e.Err }

// Session is the handle of one app session: its connection, kept alive
// across transport losses, and its latest hello. Its methods are safe for
// concurrent use.
type Session struct {
	app    *App
	id     string             // set once
	log    *slog.Logger       // set once
	ctx    context.Context    // canceled when the handle ends (detached, stopped, lost)
	cancel context.CancelFunc // cancels ctx
	ready  chan struct{}      // closed after the first hello, or when the session ends without one
	done   chan struct{}      // closed when run has returned

	mu         sync.Mutex
	userID     string                 // guarded by mu: the pseudonymous user id
	wsURL      string                 // guarded by mu (set once): the WebSocket URL to dial without a stored one
	cur        *client.Client         // guarded by mu: the live connection, nil between connections
	hello      protocol.AppHello      // guarded by mu: the latest hello
	helloed    bool                   // guarded by mu: a hello was answered
	stopped    *StoppedError          // guarded by mu: the session stopped (first word wins)
	err        error                  // guarded by mu: why the session ended; set once, before done
	events     map[string][]EventFunc // guarded by mu
	reattaches int                    // guarded by mu: successful reattaches

	// Stream, output and tool state (streams.go, outputs.go): kept across
	// reattaches, like the handlers above.
	setSem    chan struct{}            // holds one token while a SetStreams is in flight: seqs go out in order
	streamSeq uint64                   // guarded by mu: the highest streams.set seq sent or applied
	setSeq    uint64                   // guarded by mu: the seq Junction applied for setWant (0: no SetStreams answered yet)
	setWant   []string                 // guarded by mu: the streams of the last applied SetStreams, to restore after a gateway restart
	media     []MediaFunc              // guarded by mu: OnMedia handlers
	outputs   map[string]*OutputHandle // guarded by mu: live output requests by id
}

func newSession(a *App, id, userID, wsURL string) *Session {
	ctx, cancel := context.WithCancel(a.ctx)
	return &Session{
		app: a, id: id, userID: userID, wsURL: wsURL,
		log:     a.log.With("session", id),
		ctx:     ctx,
		cancel:  cancel,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		events:  map[string][]EventFunc{},
		setSem:  make(chan struct{}, 1),
		outputs: map[string]*OutputHandle{},
	}
}

// ID returns the app session's id.
func (s *Session) ID() string { return s.id }

// UserID returns the app's pseudonymous id of the session's user (from
// session.start, then from each hello).
func (s *Session) UserID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userID
}

// Hello returns the latest apps.hello answer: granted scopes, effective
// subscriptions, settings, device capabilities and state, the output
// priority class. It changes after each reattach.
func (s *Session) Hello() protocol.AppHello {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hello
}

// Reattaches returns how many times the session's connection was replaced
// after a loss (each followed by a new hello).
func (s *Session) Reattaches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reattaches
}

// Done returns a channel closed when the handle has ended for good; Err
// then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the handle ended (a *StoppedError, ErrDetached,
// ErrSuperseded, a refused attach, …), nil while it lives.
func (s *Session) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// OnEvent registers fn for the events named event on this session's
// connection ("*": all), after the App's handlers. Events that arrived
// before the registration are not replayed.
func (s *Session) OnEvent(event string, fn EventFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[event] = append(s.events[event], fn)
}

// Call sends a request on the session's connection and decodes its result
// into result (when not nil), as client.Client.Call: an answered error is
// its *protocol.Error. Between connections (while reattaching) it fails at
// once with code unavailable (retryable); after the session ended, with
// its Err.
func (s *Session) Call(ctx context.Context, method string, params, result any) error {
	c, err := s.conn()
	if err != nil {
		return err
	}
	return c.Call(ctx, method, params, result)
}

// Call is Session.Call with the result's type as a type parameter:
//
//	hello, err := appsdk.Call[protocol.AppHello](ctx, s, "apps.hello", protocol.AppSessionRef{…})
func Call[R any](ctx context.Context, s *Session, method string, params any) (R, error) {
	var r R
	err := s.Call(ctx, method, params, &r)
	return r, err
}

// conn returns the live connection or the error a call gets without one.
func (s *Session) conn() (*client.Client, error) {
	select {
	case <-s.done:
		return nil, s.Err()
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, &protocol.Error{Code: protocol.CodeUnavailable, Message: "the session is not connected", Retryable: true}
	}
	return s.cur, nil
}

// Stop stops the session on Junction (reason app_error: the app ended it)
// and ends the handle with a *StoppedError. With Options.URL it asks by
// REST (POST /api/v1/apps/{appId}/sessions/{id}/stop); without, over the
// session's connection (apps.stopSession), which Junction closes (1000)
// once the answer is sent. Stopping a stopped session answers
// alreadyStopped.
func (s *Session) Stop(ctx context.Context) (protocol.AppSessionStopped, error) {
	ref := protocol.AppSessionRef{AppID: s.app.opts.AppID, SessionID: s.id}
	var res protocol.AppSessionStopped
	var err error
	if s.app.opts.URL != "" {
		err = s.app.rest(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(ref.AppID)+"/sessions/"+url.PathEscape(s.id)+"/stop", &res)
	} else {
		err = s.Call(ctx, "apps.stopSession", ref, &res)
	}
	if err != nil {
		return res, fmt.Errorf("appsdk: stop session %s: %w", s.id, err)
	}
	s.markStopped(res.Session.StopReason, nil)
	s.cancel()
	return res, nil
}

// Close detaches the handle: its connection closes, the session stays on
// Junction (transport_down) with its resume token kept, for a later
// Attach. It waits until the handle has ended; safe to call twice. Do not
// call it from an event handler (start it on a goroutine of its own).
func (s *Session) Close() error {
	s.detach()
	<-s.done
	return nil
}

// detach ends the handle without waiting.
func (s *Session) detach() { s.cancel() }

// markStopped records that the session stopped; the first reason wins.
func (s *Session) markStopped(reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped == nil {
		s.stopped = &StoppedError{Reason: reason, Err: err}
	}
}

func (s *Session) stoppedErr() *StoppedError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// waitReady waits for the first hello; it returns the session's Err when
// it ended without one. When ctx ends first the handle is detached.
func (s *Session) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		s.detach()
		<-s.done
		return fmt.Errorf("appsdk: session %s: wait for hello: %w", s.id, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.helloed {
		return s.err
	}
	return nil
}

// dispatch runs the handlers of an event of the session's connection, on
// that connection's dispatcher goroutine. app.stopped is recorded first, so
// that the close 1000 that follows ends the handle with its reason.
func (s *Session) dispatch(f *protocol.Frame) {
	if f.Event == protocol.EventAppStopped {
		var st protocol.AppStopped
		if err := json.Unmarshal(f.Data, &st); err == nil && (st.SessionID == "" || st.SessionID == s.id) {
			s.markStopped(st.Reason, nil)
		}
	}
	if f.Event == protocol.EventOutputStatus {
		s.routeOutput(f)
	}
	for _, fn := range s.app.handlers(s, f.Event) {
		fn(s, f)
	}
}

// run connects the session and keeps it connected until it ends: first
// with ticket (until deadline), else with the stored resume token; after
// each connection a hello, whose resume token is saved. It is the only
// goroutine that sets cur and err.
func (s *Session) run(ticket string, deadline time.Time) {
	err := s.loop(ticket, deadline)
	s.mu.Lock()
	s.cur = nil
	s.err = err
	helloed := s.helloed
	s.mu.Unlock()
	s.cancel()
	s.endOutputs(err)
	if !helloed {
		close(s.ready)
	}
	if st := (*StoppedError)(nil); errors.As(err, &st) {
		s.forgetToken()
	}
	s.app.forget(s)
	if errors.Is(err, ErrDetached) {
		s.log.Info("appsdk: session detached")
	} else {
		s.log.Info("appsdk: session ended", "err", err)
	}
	close(s.done)
}

// loop is run's body; it returns why the handle ends.
func (s *Session) loop(ticket string, deadline time.Time) error {
	attempt := 0 // failed attempts since the last connection
	for {
		c, err := s.dial(ticket)
		if err != nil {
			if end := s.ended(); end != nil {
				return end
			}
			if refused := s.refusal(err); refused != nil {
				return refused
			}
			if errors.Is(err, ErrNoResumeToken) {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("appsdk: session %s: gave up connecting: %w", s.id, err)
			}
			s.log.Info("appsdk: connect failed; retrying", "err", err, "attempt", attempt+1)
			if !s.sleep(s.backoff(attempt)) {
				return s.ended()
			}
			attempt++
			continue
		}
		ticket = "" // used up by the upgrade
		if err := s.helloOn(c); err != nil {
			_ = c.Close()
			if end := s.ended(); end != nil {
				return end
			}
			var pe *protocol.Error
			if errors.As(err, &pe) && !pe.Retryable {
				return fmt.Errorf("appsdk: session %s: hello: %w", s.id, err)
			}
			s.log.Info("appsdk: hello failed; reconnecting", "err", err)
			if !s.sleep(s.backoff(attempt)) {
				return s.ended()
			}
			attempt++
			deadline = time.Now().Add(s.app.opts.ReattachFor)
			continue
		}
		attempt = 0
		select {
		case <-c.Done():
		case <-s.ctx.Done():
			_ = c.Close() // on this goroutine: Stop and detach may be called from event handlers
		}
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		if end := s.ended(); end != nil {
			return end
		}
		code := c.CloseCode()
		switch {
		case code == protocol.CloseNormal:
			s.markStopped("", nil) // 1000 without app.stopped seen: stopped all the same
			return s.stoppedErr()
		case code == protocol.CloseReplaced:
			return ErrSuperseded
		case code != 0 && !protocol.ReconnectAdvised(code):
			return fmt.Errorf("appsdk: session %s: %w", s.id, &client.CloseError{Code: code, Reason: protocol.CloseReason(code)})
		}
		s.log.Info("appsdk: connection lost; reattaching", "code", code)
		deadline = time.Now().Add(s.app.opts.ReattachFor)
		if !s.sleep(s.backoff(0)) {
			return s.ended()
		}
		attempt = 1
	}
}

// ended returns why the handle must end now, or nil: the session stopped,
// or the handle was detached.
func (s *Session) ended() error {
	if st := s.stoppedErr(); st != nil {
		return st
	}
	if s.ctx.Err() != nil {
		return ErrDetached
	}
	return nil
}

// refusal maps an upgrade refused for good to the handle's end, nil for a
// failure worth retrying: 409 is a stopped session; other 4xx but 429
// (ticket or token used, superseded or expired, another app's session, an
// uninstall, a revoked key) do not change by retrying.
func (s *Session) refusal(err error) error {
	var he *client.HandshakeError
	if !errors.As(err, &he) {
		return nil
	}
	switch {
	case he.StatusCode == http.StatusConflict:
		s.markStopped("", err)
		return s.stoppedErr()
	case he.StatusCode >= 400 && he.StatusCode < 500 && he.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("appsdk: session %s: connect refused: %w", s.id, err)
	}
	return nil
}

// dial makes one connection: with the ticket when there is one, else with
// the stored resume token. Its events go to dispatch.
func (s *Session) dial(ticket string) (*client.Client, error) {
	o := s.app.opts.Client
	o.Token = s.app.opts.APIKey
	o.Reconnect = false
	o.Header = o.Header.Clone()
	if o.Header == nil {
		o.Header = http.Header{}
	}
	s.mu.Lock()
	o.URL = s.wsURL
	s.mu.Unlock()
	if ticket != "" {
		o.Header.Set(protocol.HeaderAppTicket, ticket)
	} else {
		rec, ok, err := s.app.opts.Resume.Load(s.ctx, s.id)
		switch {
		case err != nil:
			return nil, fmt.Errorf("appsdk: session %s: load resume token: %w", s.id, err)
		case !ok:
			return nil, fmt.Errorf("appsdk: session %s: %w", s.id, ErrNoResumeToken)
		}
		o.Header.Set(protocol.HeaderAppResume, rec.Token)
		if rec.URL != "" {
			o.URL = rec.URL
		}
	}
	c := client.New(o)
	c.OnEvent("*", s.dispatch)
	c.OnBinary(s.dispatchMedia)
	c.Handle(protocol.MethodToolInvoke, s.serveTool)
	if err := c.Connect(s.ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	return c, nil
}

// helloOn says hello on c, saves the new resume token and publishes the
// hello; after the first it starts OnSession.
func (s *Session) helloOn(c *client.Client) error {
	var h protocol.AppHello
	if err := c.Call(s.ctx, "apps.hello", protocol.AppSessionRef{AppID: s.app.opts.AppID, SessionID: s.id}, &h); err != nil {
		return err
	}
	s.mu.Lock()
	first := !s.helloed
	if !first {
		s.reattaches++
	}
	s.hello, s.helloed = h, true
	s.streamSeq = max(s.streamSeq, h.SubscriptionSeq)
	if h.UserID != "" {
		s.userID = h.UserID
	}
	rec := Resume{SessionID: s.id, Token: h.ResumeToken, URL: s.wsURL, UserID: s.userID}
	// A hello whose seq is below the one Junction applied for this handle
	// comes from a gateway that lost the session's stream set (a restart).
	restore := !first && s.setSeq > 0 && h.SubscriptionSeq < s.setSeq
	want := s.setWant
	s.mu.Unlock()
	if err := s.app.opts.Resume.Save(s.ctx, rec); err != nil {
		// The session runs; only a later reattach (after a restart) is lost.
		s.log.Error("appsdk: save resume token", "err", err)
	}
	if first {
		close(s.ready)
		if fn := s.app.opts.OnSession; fn != nil {
			s.app.goOwned(func() { fn(s.ctx, s) })
		}
		s.log.Info("appsdk: session connected", "scopes", h.Scopes)
	} else {
		s.log.Info("appsdk: session reattached")
		if restore {
			s.restoreStreams(want)
		}
	}
	return nil
}

// forgetToken deletes the stored token of a stopped session (unless another
// instance saved a newer one).
func (s *Session) forgetToken() {
	s.mu.Lock()
	tok := s.hello.ResumeToken
	s.mu.Unlock()
	if tok == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.app.opts.Resume.Delete(ctx, s.id, tok); err != nil {
		s.log.Warn("appsdk: delete resume token", "err", err)
	}
}

// backoff returns the wait before attempt n (from 0): random between
// MinBackoff and min(MaxBackoff, MinBackoff·2^(n+1)).
func (s *Session) backoff(n int) time.Duration {
	lo, hi := s.app.opts.Client.MinBackoff, s.app.opts.Client.MaxBackoff
	ceil := lo
	for i := 0; i <= n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return lo + rand.N(ceil-lo+1)
}

// sleep waits d; false when the handle ended meanwhile.
func (s *Session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}
