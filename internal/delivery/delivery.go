// Package delivery makes signed outbound HTTP deliveries reliable and safe:
// the apps platform's webhooks now, the backend proxy later. It knows
// nothing of apps: a delivery is a Target (an id, a URL, the secrets to
// sign with, whether it may be internal, a Policy) and a Message (an id
// and a body).
//
// Each delivery is a POST signed as Standard Webhooks (package webhook),
// with the same webhook-id on every attempt so that receivers can dedupe.
// Around it:
//
//   - a per-attempt HTTP timeout, separate from the delivery's total budget;
//   - retries of connect errors, timeouts, 5xx and 429 with exponential
//     backoff and full jitter within the budget, waiting what Retry-After
//     says (seconds or an HTTP date) when a response carries it; no retry of
//     any other status (4xx, and 3xx: redirects are not followed);
//   - an address guard checking, at dial time, the address the target's
//     name resolved to: loopback, private, link-local, multicast,
//     unspecified and other non-public addresses are refused before any
//     connection unless the target is marked Internal; no proxy from the
//     environment;
//   - a circuit breaker per target id (per app): after consecutive failed
//     attempts it opens; while open a delivery fails fast or parks until
//     the breaker lets it through (OpenMode, per target); after the open
//     period one probe goes, and its result closes the breaker (every
//     parked delivery goes) or reopens it for twice as long;
//   - a Log receiving every attempt (MemoryLog keeps the last ones per
//     target, for the app owner's view) and Prometheus metrics by outcome.
//
// Time goes through a Clock (budget, backoff, Retry-After dates, the
// breaker), so tests of those run on a fake one; attempt latency is wall
// time.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/webhook"
)

// Defaults of Policy's zero fields.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultBudget           = 90 * time.Second
	DefaultMaxAttempts      = 10
	DefaultBaseDelay        = 500 * time.Millisecond
	DefaultMaxDelay         = 30 * time.Second
	DefaultBreakerThreshold = 5
	DefaultBreakerOpen      = 10 * time.Second
	DefaultBreakerMaxOpen   = 5 * time.Minute

	defaultConnectTimeout = 10 * time.Second
	// maxResponseDrain bounds how much of a response body is read (and
	// discarded) so the connection can be reused.
	maxResponseDrain = 64 << 10
	// maxErrorBody bounds how much of an error response the log keeps.
	maxErrorBody = 256
)

// Policy is a target's delivery policy. Zero fields take the defaults.
type Policy struct {
	Timeout     time.Duration // one attempt, request to response headers; default 10 s
	Budget      time.Duration // the whole delivery, retries and parking included; default 90 s
	MaxAttempts int           // default 10
	BaseDelay   time.Duration // the first backoff's cap; default 500 ms
	MaxDelay    time.Duration // the largest backoff cap; default 30 s

	BreakerThreshold int           // consecutive failed attempts that open the breaker; default 5
	BreakerOpen      time.Duration // the first open period; default 10 s
	BreakerMaxOpen   time.Duration // the longest open period; default 5 min
	WhenOpen         OpenMode      // fail fast (default) or park while the breaker is open
}

func (p Policy) withDefaults() Policy {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&p.Timeout, DefaultTimeout)
	def(&p.Budget, DefaultBudget)
	def(&p.BaseDelay, DefaultBaseDelay)
	def(&p.MaxDelay, DefaultMaxDelay)
	def(&p.BreakerOpen, DefaultBreakerOpen)
	def(&p.BreakerMaxOpen, DefaultBreakerMaxOpen)
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BreakerThreshold <= 0 {
		p.BreakerThreshold = DefaultBreakerThreshold
	}
	return p
}

// Target is where a delivery goes.
type Target struct {
	// ID keys the circuit breaker and the log: the app id for webhooks.
	ID string
	// URL is the absolute http or https URL to POST to.
	URL string
	// Secrets sign the delivery, one signature each (during a rotation:
	// the new secret and the old one).
	Secrets []webhook.Secret
	// Internal lets the target resolve to loopback, private and other
	// non-public addresses (an app the operator marked internal).
	Internal bool
	Policy   Policy
}

// Message is what a delivery sends.
type Message struct {
	// ID is the webhook-id, the same on every attempt; empty means a new
	// webhook.NewID().
	ID string
	// Body is sent as is; it is what is signed.
	Body []byte
	// Header holds extra request headers; Content-Type defaults to
	// application/json. The webhook-* headers are set by the delivery.
	Header http.Header
	// ReadBody, when positive, keeps up to that many bytes of the last
	// response's body in Result.Body (the backend proxy reads answers);
	// 0 discards bodies, as webhooks do.
	ReadBody int
}

// Result is how a delivery ended.
type Result struct {
	ID       string // the webhook-id used
	Outcome  Outcome
	Attempts int // attempts made: requests sent, and one refused by the guard
	Status   int // the last response's status, 0 if none
	// Body is the last response's body, up to Message.ReadBody bytes, and
	// BodyTruncated reports that there was more.
	Body          []byte
	BodyTruncated bool
	// RetryAfter is the last response's Retry-After (429 and 5xx), 0 if none.
	RetryAfter time.Duration
}

// Error is a failed delivery's error. It wraps ErrRefused, ErrBreakerOpen,
// ErrRejected, ErrExhausted or the caller's context error.
type Error struct {
	Stage    Stage // where the last attempt ended
	Status   int   // the last status, 0 if none
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("delivery: %v (stage %s, status %d, %d attempts)", e.Err, e.Stage, e.Status, e.Attempts)
}

func (e *Error) Unwrap() error { return e.Err }

// Errors a delivery can end with (besides ErrRefused, ErrBreakerOpen and
// context errors).
var (
	// ErrRejected: the target answered with a status that is not retried.
	ErrRejected = errors.New("delivery: rejected by the target")
	// ErrExhausted: retryable failures until the budget or the attempt
	// limit ran out.
	ErrExhausted = errors.New("delivery: retries exhausted")
)

// Clock is the time a Deliverer decides with: now, and waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or until wake is closed (nil: never), or until ctx
	// ends (returning its error).
	Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits with a timer.
func (RealClock) Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Config configures a Deliverer.
type Config struct {
	// Purpose labels the metrics ("webhook"); default "webhook".
	Purpose string
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Log receives every attempt; nil: a MemoryLog with its defaults.
	Log Log
	// Clock decides budget, backoff and breaker time; nil: RealClock.
	Clock Clock
	// Jitter picks a backoff in [0, max]; nil: uniform (full jitter).
	Jitter func(max time.Duration) time.Duration
	// UserAgent is sent on every request; default "junction-webhook".
	UserAgent string
	// MaxIdlePerHost is how many idle connections to one host are kept
	// for reuse; default 4 (webhooks). The backend proxy, whose backends
	// take many requests at once, keeps more.
	MaxIdlePerHost int
}

// Deliverer makes deliveries. Safe for concurrent use; it starts no
// goroutine of its own (each Deliver runs on its caller's).
type Deliverer struct {
	guarded  *http.Client // set once by New: public targets only
	internal *http.Client // set once by New: internal targets
	clock    Clock        // set once by New
	jitter   func(time.Duration) time.Duration
	log      Log
	metrics  *metrics
	ua       string

	mu       sync.Mutex          // leaf
	breakers map[string]*breaker // guarded by mu: targets that failed lately
}

// New returns a Deliverer.
func New(cfg Config) *Deliverer {
	if cfg.Purpose == "" {
		cfg.Purpose = "webhook"
	}
	if cfg.Log == nil {
		cfg.Log = &MemoryLog{}
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(max time.Duration) time.Duration { return rand.N(max + 1) }
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "junction-webhook"
	}
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 4
	}
	return &Deliverer{
		guarded: newClient(true, cfg.MaxIdlePerHost), internal: newClient(false, cfg.MaxIdlePerHost),
		clock: cfg.Clock, jitter: cfg.Jitter, log: cfg.Log, ua: cfg.UserAgent,
		metrics:  newMetrics(cfg.Registerer, cfg.Purpose),
		breakers: make(map[string]*breaker),
	}
}

func newClient(guard bool, idlePerHost int) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil, // never a proxy from the environment: it would bypass the guard
		DialContext:           newDialer(guard).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, idlePerHost),
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // the per-attempt context bounds it
	}
	return &http.Client{
		Transport: tr,
		// Redirects are not followed: a 3xx is the answer (and not retried),
		// so a redirect cannot lead past the guard or re-post the body.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Log returns the Deliverer's log (to list a MemoryLog).
func (d *Deliverer) Log() Log { return d.log }

// Close closes idle connections.
func (d *Deliverer) Close() {
	d.guarded.CloseIdleConnections()
	d.internal.CloseIdleConnections()
}

// Deliver sends m to t, retrying as t.Policy says, and returns how it
// ended. A nil error means a 2xx.
func (d *Deliverer) Deliver(ctx context.Context, t Target, m Message) (Result, error) {
	p := t.Policy.withDefaults()
	if m.ID == "" {
		m.ID = webhook.NewID()
	}
	res := Result{ID: m.ID}
	start := d.clock.Now()
	deadline := start.Add(p.Budget)
	fail := func(o Outcome, stage Stage, status int, err error) (Result, error) {
		res.Outcome, res.Status = o, status
		d.metrics.delivery(o)
		return res, &Error{Stage: stage, Status: status, Attempts: res.Attempts, Err: err}
	}
	u, err := checkURL(t.URL)
	if err == nil && t.ID == "" {
		err = fmt.Errorf("%w: a target needs an id (its breaker and log key)", ErrRefused)
	}
	if err != nil {
		d.record(Attempt{Delivery: m.ID, Target: t.ID, Attempt: 1, At: start, Stage: StageGuard, Error: err.Error()})
		return fail(OutcomeRefused, StageGuard, 0, err)
	}
	for n := 1; ; n++ {
		probe, err := d.acquire(ctx, t.ID, p.WhenOpen, deadline)
		if err != nil {
			stage, o := StageBreaker, OutcomeBreaker
			if ctx.Err() != nil {
				stage, o = StageCancelled, OutcomeCancelled
			}
			d.record(Attempt{Delivery: m.ID, Target: t.ID, Attempt: n, At: d.clock.Now(), Stage: stage, Error: err.Error()})
			return fail(o, stage, res.Status, err)
		}
		res.Attempts = n
		a, retryAfter, hasRetryAfter, aerr := d.attempt(ctx, t, u, m, n, deadline, p, &res)
		res.Status = a.Status
		res.RetryAfter = retryAfter
		v := unhealthy
		switch {
		case a.Stage == StageResponse && a.Status != 429 && a.Status < 500:
			v = healthy
		case a.Stage == StageGuard || a.Stage == StageCancelled:
			v = neutral
		}
		d.settle(t.ID, probe, v, p)

		switch {
		case a.Stage == StageResponse && a.Status >= 200 && a.Status < 300:
			d.record(a)
			res.Outcome = OutcomeDelivered
			d.metrics.delivery(OutcomeDelivered)
			return res, nil
		case a.Stage == StageGuard:
			d.record(a)
			return fail(OutcomeRefused, a.Stage, 0, aerr)
		case a.Stage == StageCancelled:
			d.record(a)
			return fail(OutcomeCancelled, a.Stage, 0, ctx.Err())
		case v == healthy: // a status that is not retried
			d.record(a)
			return fail(OutcomeRejected, a.Stage, a.Status, fmt.Errorf("%w: status %d", ErrRejected, a.Status))
		}
		// Retryable: wait what the target asked for, else a full-jitter backoff.
		if n >= p.MaxAttempts {
			d.record(a)
			return fail(OutcomeExhausted, a.Stage, a.Status, fmt.Errorf("%w after %d attempts: %s", ErrExhausted, n, a.Error))
		}
		wait := retryAfter
		if !hasRetryAfter {
			wait = d.jitter(min(p.MaxDelay, p.BaseDelay<<min(n-1, 30)))
		}
		if !d.clock.Now().Add(wait).Before(deadline) {
			d.record(a)
			return fail(OutcomeExhausted, a.Stage, a.Status,
				fmt.Errorf("%w: the next attempt, in %s, would end past the budget of %s: %s", ErrExhausted, wait, p.Budget, a.Error))
		}
		a.Retry = wait
		d.record(a)
		if err := d.clock.Sleep(ctx, wait, nil); err != nil {
			d.record(Attempt{Delivery: m.ID, Target: t.ID, Attempt: n + 1, At: d.clock.Now(), Stage: StageCancelled, Error: err.Error()})
			return fail(OutcomeCancelled, StageCancelled, res.Status, err)
		}
	}
}

func (d *Deliverer) record(a Attempt) {
	d.metrics.attempt(a)
	d.log.Record(a)
}

// checkURL accepts absolute http and https URLs without user info.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: bad URL: %v", ErrRefused, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%w: want an absolute http(s) URL without user info", ErrRefused)
	}
	return u, nil
}

// attempt makes one signed request. It returns the attempt (not yet
// recorded), the Retry-After the response asked for, if any, and for a
// refused attempt an error wrapping ErrRefused.
func (d *Deliverer) attempt(ctx context.Context, t Target, u *url.URL, m Message, n int, deadline time.Time, p Policy, res *Result) (Attempt, time.Duration, bool, error) {
	res.Body, res.BodyTruncated = nil, false
	a := Attempt{Delivery: m.ID, Target: t.ID, Attempt: n, At: d.clock.Now()}
	timeout := p.Timeout
	if left := deadline.Sub(a.At); left < timeout {
		timeout = max(left, time.Millisecond)
	}
	began := time.Now() // wall time, before the timeout starts, so a timed-out attempt's latency is at least the timeout
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, u.String(), bytes.NewReader(m.Body))
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrRefused, err)
		a.Stage, a.Error = StageGuard, err.Error()
		return a, 0, false, err
	}
	for k, vs := range m.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", d.ua)
	if err := webhook.SignHeaders(req.Header, m.ID, d.clock.Now(), m.Body, t.Secrets...); err != nil {
		err = fmt.Errorf("%w: cannot sign: %w", ErrRefused, err)
		a.Stage, a.Error = StageGuard, err.Error()
		return a, 0, false, err
	}
	client := d.guarded
	if t.Internal {
		client = d.internal
	}
	resp, err := client.Do(req)
	a.Latency = time.Since(began)
	if err != nil {
		a.Stage, a.Error = classify(ctx, err)
		return a, 0, false, err
	}
	defer resp.Body.Close()
	a.Stage, a.Status = StageResponse, resp.StatusCode
	var head []byte
	if m.ReadBody > 0 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(m.ReadBody)+1))
		if err != nil && actx.Err() != nil {
			// The answer's headers came in time, its body did not.
			a.Status = 0
			a.Stage, a.Error = classify(ctx, context.DeadlineExceeded)
			return a, 0, false, nil
		}
		if len(body) > m.ReadBody {
			body, res.BodyTruncated = body[:m.ReadBody], true
		}
		res.Body = body
		head = body[:min(len(body), maxErrorBody)]
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		if m.ReadBody <= 0 {
			head, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		}
		a.Error = fmt.Sprintf("status %d", resp.StatusCode)
		if len(head) > 0 {
			a.Error += ": " + string(bytes.ToValidUTF8(head, nil))
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrain))
	if resp.StatusCode == 429 || resp.StatusCode >= 500 {
		if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), d.clock.Now()); ok {
			return a, ra, true, nil
		}
	}
	return a, 0, false, nil
}

// classify names the stage a transport error ended at.
func classify(ctx context.Context, err error) (Stage, string) {
	switch {
	case errors.Is(err, ErrRefused):
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return StageGuard, err.Error()
	case ctx.Err() != nil:
		return StageCancelled, ctx.Err().Error()
	case errors.Is(err, context.DeadlineExceeded):
		return StageTimeout, "no response within the timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return StageTimeout, err.Error()
	}
	return StageConnect, err.Error()
}

// parseRetryAfter reads Retry-After: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). A date in the past means now.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
