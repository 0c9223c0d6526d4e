package appsdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Defaults of Options.
const (
	DefaultMaxWebhookBytes = 1 << 20
	DefaultDedupe          = 4096
	DefaultReattachFor     = 5 * time.Minute
	// DefaultConnectTimeout bounds a session's first connection and hello
	// when the start ticket gives no earlier limit.
	DefaultConnectTimeout = time.Minute
)

// Options configure an App. AppID, APIKey and WebhookSecrets are required;
// the zero value of every other field is usable.
type Options struct {
	// AppID is the app's id (com.example.captions).
	AppID string
	// APIKey is one of the app's API keys, jk_…: the credential of every
	// session connection and REST request. It is never logged.
	APIKey string
	// WebhookSecrets verify the webhooks (whsec_…; during a rotation the
	// new and the old one).
	WebhookSecrets []webhook.Secret
	// URL is the base URL of Junction's HTTP API (http://127.0.0.1:7700 or
	// https://junction.example.com), for Sessions, Reattach and the REST
	// fallback of Session.Stop. Sessions started by webhook connect to the
	// webhook's websocketUrl without it.
	URL string
	// Resume keeps the sessions' resume tokens; default a MemoryResumeStore
	// (lost with the process: use a DirResumeStore or the app's own
	// database for reattaching after a restart).
	Resume ResumeStore

	// OnSession, when set, runs on a goroutine of its own for each session
	// the App connected (by webhook, Connect, Attach or Reattach) once its
	// first hello is answered. ctx is canceled when the session ends; the
	// App's Close waits for OnSession to return.
	OnSession func(ctx context.Context, s *Session)
	// OnStop, when set, runs for each verified session.stop webhook (also
	// for sessions this App does not hold), before it is answered: keep it
	// short.
	OnStop func(ctx context.Context, stop protocol.AppSessionStopHook)

	// Client is the template of each session connection: timeouts, the
	// backoff bounds (MinBackoff, MaxBackoff) between reattach attempts,
	// Logger, OnFrame. The SDK sets URL, Token, Header and Reconnect.
	Client client.Options
	// ReattachFor bounds how long a session whose connection was lost keeps
	// trying to reattach; default 5 minutes. Then the session ends, and
	// Junction may start it again with a session.start whose resumed is true.
	ReattachFor time.Duration
	// ConnectTimeout bounds a session's first connection and hello when
	// the start ticket does not expire sooner; default 1 minute.
	ConnectTimeout time.Duration

	// MaxWebhookBytes bounds a webhook's body; default 1 MiB.
	MaxWebhookBytes int64
	// Dedupe is how many recent webhook-ids are remembered; default 4096.
	Dedupe int
	// HTTPClient makes the REST requests; default http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives the SDK's logs; by default they are discarded.
	Logger *slog.Logger
	// Now is the webhook verifier's clock; default time.Now.
	Now func() time.Time
}

// EventFunc handles an event of a session's connection (an app.stopped, a
// channel.message, …). Handlers of one session run one at a time, in
// arrival order, on the goroutine that dispatches its connection's events:
// a handler that blocks delays the session's next events.
type EventFunc func(s *Session, f *protocol.Frame)

// Webhook is a verified webhook that HandleWebhook's handlers receive.
type Webhook struct {
	ID        string    // webhook-id: every retry of one delivery carries the same
	Type      string    // the body's type
	Timestamp time.Time // webhook-timestamp
	Body      []byte    // the body as signed
}

// WebhookFunc answers a verified webhook of a type registered with
// HandleWebhook. A 2xx answer marks its webhook-id as handled; any other
// lets a retry of the same delivery through again.
type WebhookFunc func(w http.ResponseWriter, r *http.Request, hook Webhook)

// App is one app's backend: the webhook handler and the sessions it holds.
// Its methods are safe for concurrent use.
//
// Goroutines: per session one that connects and reattaches it (and, on
// its connection, the client's), per session the OnSession callback; all
// end before Close returns.
//
// Locks (docs/LOCKORDER.md): App.mu and Session.mu are leaves, and no lock
// is held while user code runs.
type App struct {
	opts     Options // set once by New, with defaults
	log      *slog.Logger
	verifier webhook.Verifier // set once by New
	seen     *dedupe
	ctx      context.Context    // canceled by Close
	cancel   context.CancelFunc // cancels ctx
	wg       sync.WaitGroup     // sessions' goroutines and OnSession callbacks; Add under mu while !closed

	mu       sync.Mutex
	closed   bool                   // guarded by mu
	sessions map[string]*Session    // guarded by mu: live handles by session id
	events   map[string][]EventFunc // guarded by mu: App-wide event handlers
	hooks    map[string]WebhookFunc // guarded by mu: webhook types beyond session.start and .stop
	tools    map[string]ToolFunc    // guarded by mu: tool handlers by tool name (HandleTool)
}

// New returns an App for opts. It has no side effects: serve it as an
// http.Handler, or call Connect, Attach or Reattach.
func New(opts Options) (*App, error) {
	switch {
	case opts.AppID == "":
		return nil, errors.New("appsdk: new: no AppID")
	case !strings.HasPrefix(opts.APIKey, "jk_"):
		return nil, errors.New("appsdk: new: APIKey is not an API key (jk_…)")
	case len(opts.WebhookSecrets) == 0:
		return nil, errors.New("appsdk: new: no WebhookSecrets")
	}
	for _, s := range opts.WebhookSecrets {
		if s.IsZero() {
			return nil, errors.New("appsdk: new: a zero webhook secret")
		}
	}
	if opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("appsdk: new: URL %q is not an http(s) base URL", opts.URL)
		}
		opts.URL = strings.TrimRight(opts.URL, "/")
	}
	if opts.Resume == nil {
		opts.Resume = NewMemoryResumeStore()
	}
	if opts.ReattachFor <= 0 {
		opts.ReattachFor = DefaultReattachFor
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxWebhookBytes <= 0 {
		opts.MaxWebhookBytes = DefaultMaxWebhookBytes
	}
	if opts.Dedupe <= 0 {
		opts.Dedupe = DefaultDedupe
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client.MinBackoff <= 0 {
		opts.Client.MinBackoff = client.DefaultMinBackoff
	}
	if opts.Client.MaxBackoff < opts.Client.MinBackoff {
		opts.Client.MaxBackoff = max(client.DefaultMaxBackoff, opts.Client.MinBackoff)
	}
	if opts.Client.Logger == nil {
		opts.Client.Logger = opts.Logger
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &App{
		opts:     opts,
		log:      opts.Logger.With("app", opts.AppID),
		verifier: webhook.Verifier{Secrets: append([]webhook.Secret(nil), opts.WebhookSecrets...), Now: opts.Now},
		seen:     newDedupe(opts.Dedupe),
		ctx:      ctx,
		cancel:   cancel,
		sessions: map[string]*Session{},
		events:   map[string][]EventFunc{},
		hooks:    map[string]WebhookFunc{},
		tools:    map[string]ToolFunc{},
	}, nil
}

// ErrClosed is returned by an App's methods after Close, and by its webhook
// handler as 503.
var ErrClosed = errors.New("appsdk: app closed")

// Close detaches every session (each stays on Junction as transport_down,
// its resume token kept in the ResumeStore), stops connecting new ones, and
// waits for every goroutine of the App, OnSession callbacks included. It is
// safe to call twice.
func (a *App) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	return nil
}

// goOwned runs fn on a goroutine the App waits for in Close; false when the
// App is closed (fn does not run).
func (a *App) goOwned(fn func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Go(fn)
	return true
}

// OnEvent registers fn for the events named event on every session's
// connection; "*" registers it for all events. Register before serving:
// an event that arrives before its handler is registered is not replayed.
// App handlers run before the session's own (Session.OnEvent), each in
// registration order.
func (a *App) OnEvent(event string, fn EventFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events[event] = append(a.events[event], fn)
}

// OnEventData registers fn for the events named event on every session of
// a, with the event's data decoded into T (a protocol type). An event whose
// data does not decode is logged and skipped.
func OnEventData[T any](a *App, event string, fn func(s *Session, data T)) {
	a.OnEvent(event, func(s *Session, f *protocol.Frame) {
		var v T
		if err := json.Unmarshal(f.Data, &v); err != nil {
			s.log.Warn("appsdk: event data does not decode", "event", f.Event, "err", err)
			return
		}
		fn(s, v)
	})
}

// HandleWebhook registers fn for the webhooks of type typ. session.start
// and session.stop are the SDK's own; registering them panics, as does
// registering a type twice.
func (a *App) HandleWebhook(typ string, fn WebhookFunc) {
	if typ == protocol.WebhookSessionStart || typ == protocol.WebhookSessionStop {
		panic("appsdk: HandleWebhook: " + typ + " is handled by the SDK")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.hooks[typ]; dup {
		panic("appsdk: HandleWebhook: " + typ + " registered twice")
	}
	a.hooks[typ] = fn
}

// Session returns the live handle of session id, or nil.
func (a *App) Session(id string) *Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

// Sessions lists the app's sessions in state (empty: all states) from
// Junction (GET /api/v1/apps/{appId}/sessions, every page), authenticated
// with the API key. It needs Options.URL.
func (a *App) Sessions(ctx context.Context, state string) ([]protocol.AppSession, error) {
	var all []protocol.AppSession
	after := ""
	for {
		q := url.Values{"limit": {"100"}}
		if state != "" {
			q.Set("state", state)
		}
		if after != "" {
			q.Set("after", after)
		}
		var page protocol.AppSessionList
		if err := a.rest(ctx, http.MethodGet, "/api/v1/apps/"+url.PathEscape(a.opts.AppID)+"/sessions?"+q.Encode(), &page); err != nil {
			return nil, fmt.Errorf("appsdk: list sessions: %w", err)
		}
		all = append(all, page.Sessions...)
		if page.Next == "" || len(page.Sessions) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// rest makes a REST request with the API key and decodes a 2xx answer into
// out; an error answer is returned as its *protocol.Error.
func (a *App) rest(ctx context.Context, method, path string, out any) error {
	if a.opts.URL == "" {
		return errors.New("no Options.URL to reach Junction's HTTP API")
	}
	req, err := http.NewRequestWithContext(ctx, method, a.opts.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.opts.APIKey)
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var env protocol.ErrorBody
		if json.Unmarshal(raw, &env) == nil && env.Error != nil && env.Error.Code != "" {
			return env.Error
		}
		return fmt.Errorf("http %d: %.200s", resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// Connect connects the session that hook starts, with the API key and the
// hook's ticket, and waits for its first hello (the webhook handler does
// the same in the background). Use it when the backend receives webhooks
// its own way. ctx bounds the wait: when it ends first the session is
// detached. A session.start for a session the App holds (a resurrection)
// detaches the old handle first.
func (a *App) Connect(ctx context.Context, hook protocol.AppSessionStartHook) (*Session, error) {
	if err := a.checkStart(hook); err != nil {
		return nil, err
	}
	s, err := a.launch(hook.SessionID, hook.UserID, hook.WebSocketURL, hook.Ticket, a.startDeadline(hook))
	if err != nil {
		return nil, err
	}
	return s, s.waitReady(ctx)
}

func (a *App) checkStart(hook protocol.AppSessionStartHook) error {
	switch {
	case hook.AppID != a.opts.AppID:
		return fmt.Errorf("appsdk: session.start for app %q, this is %q", hook.AppID, a.opts.AppID)
	case hook.SessionID == "" || hook.Ticket == "" || hook.WebSocketURL == "":
		return errors.New("appsdk: session.start without sessionId, ticket or websocketUrl")
	}
	return nil
}

// startDeadline is when a start's first connection must have succeeded:
// the ticket's expiry, within ConnectTimeout.
func (a *App) startDeadline(hook protocol.AppSessionStartHook) time.Time {
	d := time.Now().Add(a.opts.ConnectTimeout)
	if !hook.TicketExpiresAt.IsZero() && hook.TicketExpiresAt.Before(d) {
		d = hook.TicketExpiresAt
	}
	return d
}

// Attach reattaches the session id with the resume token the ResumeStore
// holds for it and waits for its hello: after a restart of the backend,
// or to take a session over from another instance (whose connection then
// ends with 4009). An App that holds a live handle of id returns it.
func (a *App) Attach(ctx context.Context, id string) (*Session, error) {
	if s := a.Session(id); s != nil {
		return s, s.waitReady(ctx)
	}
	rec, ok, err := a.opts.Resume.Load(ctx, id)
	switch {
	case err != nil:
		return nil, fmt.Errorf("appsdk: attach %s: load resume token: %w", id, err)
	case !ok:
		return nil, fmt.Errorf("appsdk: attach %s: %w", id, ErrNoResumeToken)
	}
	wsURL := rec.URL
	if wsURL == "" {
		// A store that kept only the token: Junction's own /ws.
		if a.opts.URL == "" {
			return nil, fmt.Errorf("appsdk: attach %s: the stored record has no URL, and there is no Options.URL", id)
		}
		wsURL = "ws" + strings.TrimPrefix(a.opts.URL, "http") + "/ws"
	}
	s, err := a.launch(id, rec.UserID, wsURL, "", time.Now().Add(a.opts.ConnectTimeout))
	if err != nil {
		return nil, err
	}
	return s, s.waitReady(ctx)
}

// ErrNoResumeToken: the ResumeStore holds no token for the session.
var ErrNoResumeToken = errors.New("appsdk: no resume token stored for the session")

// Reattach attaches every session of the app that is running or
// transport_down on Junction and that the ResumeStore holds a token for:
// what a backend does when it starts again. It returns the sessions
// attached; the error joins the sessions that could not be (a token
// superseded, a session stopped meanwhile). Sessions without a stored
// token are skipped (logged): the app cannot prove it holds them, and
// Junction ends or restarts them on its own schedule.
func (a *App) Reattach(ctx context.Context) ([]*Session, error) {
	var out []*Session
	var errs []error
	for _, state := range []string{protocol.AppStateTransportDown, protocol.AppStateRunning} {
		list, err := a.Sessions(ctx, state)
		if err != nil {
			return out, err
		}
		for _, ss := range list {
			if a.Session(ss.ID) != nil {
				continue
			}
			s, err := a.Attach(ctx, ss.ID)
			switch {
			case errors.Is(err, ErrNoResumeToken):
				a.log.Info("appsdk: no resume token for a session; not reattached", "session", ss.ID, "state", ss.State)
			case err != nil:
				errs = append(errs, err)
			default:
				out = append(out, s)
			}
		}
	}
	return out, errors.Join(errs...)
}

// launch makes a session handle and starts its connecting goroutine. A
// live handle of the same id is detached first.
func (a *App) launch(id, userID, wsURL, ticket string, deadline time.Time) (*Session, error) {
	s := newSession(a, id, userID, wsURL)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	old := a.sessions[id]
	a.sessions[id] = s
	a.wg.Go(func() { s.run(ticket, deadline) })
	a.mu.Unlock()
	if old != nil {
		old.detach()
	}
	return s, nil
}

// forget removes s from the live handles, if it still is the one of its id.
func (a *App) forget(s *Session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessions[s.id] == s {
		delete(a.sessions, s.id)
	}
}

// handlers returns the App's and s's handlers of event, in calling order.
func (a *App) handlers(s *Session, event string) []EventFunc {
	a.mu.Lock()
	fns := append(append([]EventFunc(nil), a.events[event]...), a.events["*"]...)
	a.mu.Unlock()
	s.mu.Lock()
	fns = append(append(fns, s.events[event]...), s.events["*"]...)
	s.mu.Unlock()
	return fns
}
