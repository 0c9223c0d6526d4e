// Package proxy is the gateway's plugin mechanism: it forwards what the
// configuration routes to backends over signed HTTP (Standard Webhooks,
// through internal/delivery) and turns their answers into results, protocol
// errors, refusals and rewrites. It implements hub.Interceptor:
//
//   - methods the hub's table does not hold, routed by name or prefix
//     (chat.*), are POSTed to their backend with the caller's principal and
//     params; the answer's result is the method's result;
//   - a namespace's subscribe hook may refuse a subscription, its publish
//     hook refuse a publication or rewrite its data;
//   - the connect hook may refuse a WebSocket before the upgrade or attach
//     info to the connection.
//
// Each backend has a timeout, a concurrency limit (with an optional bounded
// queue), a circuit breaker and metrics; an outage answers unavailable with
// retryAfterMs, never a wait longer than the timeout. The configuration is
// replaced as a whole (Compile, then Install) while connections stay open.
// The backend's side of the contract is in docs/proxy.md.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

var _ hub.Interceptor = (*Proxy)(nil)

// Options configure a Proxy.
type Options struct {
	Registerer prometheus.Registerer // receives junction_proxy_* metrics; nil: none
	Logger     *slog.Logger
	NodeID     string // sent to backends as nodeId
	// Clock is the delivery clock (the breaker's time); nil: the wall clock.
	Clock delivery.Clock
}

// Proxy forwards requests to backends. Safe for concurrent use; it starts
// no goroutine (each request runs on its caller's).
type Proxy struct {
	d       *delivery.Deliverer // set once by New; keeps the breakers across reloads
	clock   delivery.Clock      // set once by New
	log     *slog.Logger        // set once by New
	nodeID  string              // set once by New
	metrics *metrics            // set once by New

	state atomic.Pointer[state] // replaced whole by Install; nil before the first
}

// New returns a Proxy with no backend: it forwards nothing until Install.
func New(o Options) *Proxy {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = delivery.RealClock{}
	}
	return &Proxy{
		// Idle connections are kept for reuse up to the default concurrency
		// limit: a busy backend is not reconnected to per request.
		d: delivery.New(delivery.Config{Purpose: "proxy", Registerer: o.Registerer, Clock: o.Clock, UserAgent: "junction-proxy",
			Log: &delivery.MemoryLog{}, MaxIdlePerHost: DefaultMaxConcurrency}),
		clock: o.Clock, log: o.Logger, nodeID: o.NodeID,
		metrics: newMetrics(o.Registerer),
	}
}

// Close closes idle connections to backends.
func (p *Proxy) Close() { p.d.Close() }

// Plan is a compiled configuration, ready to Install.
type Plan struct{ st *state }

// Compile validates cfg and prepares it; reserved, when not nil, lists the
// methods of the hub's table (no route may cover one). Nothing changes
// until Install. Backends whose settings did not change keep their
// concurrency accounting; every backend keeps its circuit breaker (by
// name).
func (p *Proxy) Compile(cfg Config, reserved func() []string) (*Plan, error) {
	st, err := compile(cfg, reserved, p.state.Load())
	if err != nil {
		return nil, err
	}
	for _, r := range st.exact {
		p.bindMethod(r)
	}
	for _, r := range st.prefixes {
		p.bindMethod(r)
	}
	return &Plan{st: st}, nil
}

// Install makes pl the running configuration: requests from now on use it;
// requests in flight finish with the one they started with.
func (p *Proxy) Install(pl *Plan) {
	p.state.Store(pl.st)
	for name := range pl.st.backends {
		p.metrics.declare(name)
	}
}

// Routes returns the method routes of the running configuration, for the
// AsyncAPI document.
func (p *Proxy) Routes() []protocol.ProxiedSpec {
	if st := p.state.Load(); st != nil {
		return st.specs
	}
	return nil
}

// Breaker returns the circuit breaker state of a backend.
func (p *Proxy) Breaker(backend string) delivery.BreakerStatus { return p.d.Breaker(backend) }

// bindMethod builds the hub method serving r: Async (a backend call must
// not hold up the connection's other requests), named after the route so
// that the hub's per-method metrics keep a bounded label set.
func (p *Proxy) bindMethod(r *route) {
	b := r.backend
	r.method = &hub.Method{
		Name: r.spec.Method, Scope: r.spec.Scope, Mode: hub.Async,
		Handler: func(ctx context.Context, call *hub.Call) (any, error) {
			req := &Request{Kind: KindMethod, Principal: call.Principal.Info(), NodeID: p.nodeID,
				Method: call.Method, Params: call.Params, Idem: call.Idem}
			if call.Conn != nil {
				req.ConnID = call.Conn.ID()
			}
			var result json.RawMessage
			err := p.call(ctx, b, req, func(resp *Response) error {
				if len(resp.Result) == 0 || string(resp.Result) == "null" {
					return errors.New("a method's answer needs a result")
				}
				result = resp.Result
				return nil
			})
			if err != nil {
				return nil, err
			}
			return result, nil
		},
	}
}

// HasBackend reports whether the running configuration declares a backend
// of that name.
func (p *Proxy) HasBackend(name string) bool {
	st := p.state.Load()
	return st != nil && st.backends[name] != nil
}

// CallBackend sends a method call to the backend named name, outside
// any method route: the scheduler's backend action (job names it). The
// request is the one of a routed method (kind method, signed, with the
// backend's timeout, concurrency limit, breaker and metrics), with caller
// as the principal, no connection and schedule set to job. The answer's
// result (nil when the backend gave none) or its error is returned; a
// backend the running configuration lacks (a reload removed it) answers
// not_found.
func (p *Proxy) CallBackend(ctx context.Context, name string, caller *auth.Principal, method string, params json.RawMessage, job, idem string) (json.RawMessage, error) {
	st := p.state.Load()
	var b *backend
	if st != nil {
		b = st.backends[name]
	}
	if b == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "proxy backend %q is not configured (proxy.backends)", name)
	}
	req := &Request{Kind: KindMethod, Principal: caller.Info(), NodeID: p.nodeID,
		Method: method, Params: params, Idem: idem, Schedule: job}
	var result json.RawMessage
	err := p.call(ctx, b, req, func(resp *Response) error {
		if len(resp.Result) > 0 && string(resp.Result) != "null" {
			c, err := protocol.Compact(resp.Result)
			if err != nil {
				return err
			}
			result = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// Method implements hub.Interceptor: the route of name, exact routes first,
// then the longest prefix.
func (p *Proxy) Method(name string) *hub.Method {
	st := p.state.Load()
	if st == nil {
		return nil
	}
	if r := st.exact[name]; r != nil {
		return r.method
	}
	for _, r := range st.prefixes {
		if strings.HasPrefix(name, r.prefix) && len(name) > len(r.prefix) {
			return r.method
		}
	}
	return nil
}

// Connect implements hub.Interceptor: the connect hook, if configured.
func (p *Proxy) Connect(ctx context.Context, pr *auth.Principal) (json.RawMessage, error) {
	st := p.state.Load()
	if st == nil || st.connect == nil {
		return nil, nil
	}
	var hr hookResult
	err := p.call(ctx, st.connect, &Request{Kind: KindConnect, Principal: pr.Info(), NodeID: p.nodeID}, hr.decode)
	if err != nil || len(hr.Info) == 0 || string(hr.Info) == "null" {
		return nil, err
	}
	return hr.Info, nil
}

// Subscribe implements hub.Interceptor: the namespace's subscribe hook.
func (p *Proxy) Subscribe(ctx context.Context, pr *auth.Principal, t hub.Topic, connID string) error {
	st := p.state.Load()
	if st == nil || st.subscribe[t.Namespace] == nil {
		return nil
	}
	b := st.subscribe[t.Namespace]
	return p.call(ctx, b, &Request{Kind: KindSubscribe, Principal: pr.Info(), NodeID: p.nodeID, ConnID: connID,
		Topic: t.Name, Namespace: t.Namespace, Bound: t.Params()}, nil)
}

// PublishHooks implements hub.PublishHooks: whether namespace has a publish
// hook (without one, Publish changes nothing and the hub may batch).
func (p *Proxy) PublishHooks(namespace string) bool {
	st := p.state.Load()
	return st != nil && st.publish[namespace] != nil
}

// Publish implements hub.Interceptor: the namespace's publish hook, which
// may rewrite data.
func (p *Proxy) Publish(ctx context.Context, pr *auth.Principal, t hub.Topic, event string, data json.RawMessage, info *hub.ClientInfo) (json.RawMessage, error) {
	st := p.state.Load()
	if st == nil || st.publish[t.Namespace] == nil {
		return data, nil
	}
	b := st.publish[t.Namespace]
	req := &Request{Kind: KindPublish, Principal: pr.Info(), NodeID: p.nodeID,
		Topic: t.Name, Namespace: t.Namespace, Bound: t.Params(), Event: event, Data: data}
	if info != nil {
		req.ConnID = info.ConnID
	}
	var hr hookResult
	if err := p.call(ctx, b, req, hr.decode); err != nil {
		return nil, err
	}
	if len(hr.Data) == 0 || string(hr.Data) == "null" {
		return data, nil
	}
	return hr.Data, nil
}

// decode reads the result of a connect or publish hook: absent, null or an
// object with optional info and data (compacted).
func (hr *hookResult) decode(resp *Response) error {
	if len(resp.Result) == 0 || string(resp.Result) == "null" {
		return nil
	}
	if err := json.Unmarshal(resp.Result, hr); err != nil {
		return fmt.Errorf("a hook's result must be an object with info or data: %w", err)
	}
	for _, v := range []*json.RawMessage{&hr.Info, &hr.Data} {
		if len(*v) > 0 {
			c, err := protocol.Compact(*v)
			if err != nil {
				return err
			}
			*v = c
		}
	}
	return nil
}

// backend is one configured backend. Immutable but for its counters.
type backend struct {
	cfg    BackendConfig  // with defaults
	secret webhook.Secret // parsed cfg.Secret
	tg     delivery.Target
	sem    chan struct{} // a slot per request running
	queued atomic.Int64  // requests waiting for a slot
}

func newBackend(cfg BackendConfig, secret webhook.Secret) *backend {
	b := &backend{cfg: cfg, secret: secret, sem: make(chan struct{}, cfg.MaxConcurrency)}
	b.tg = b.target()
	return b
}

// acquire takes a slot: at once, or after waiting in the queue (at most
// the backend's timeout) when it has room; else unavailable.
func (p *Proxy) acquire(ctx context.Context, b *backend) error {
	select {
	case b.sem <- struct{}{}:
		return nil
	default:
	}
	if b.queued.Add(1) > int64(b.cfg.MaxQueue) {
		b.queued.Add(-1)
		return busy(b)
	}
	defer b.queued.Add(-1)
	t := time.NewTimer(b.cfg.Timeout)
	defer t.Stop()
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-t.C:
		return busy(b)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func busy(b *backend) error {
	e := protocol.Errorf(protocol.CodeUnavailable, "backend %s is busy (%d requests running)", b.cfg.Name, b.cfg.MaxConcurrency)
	e.RetryAfterMs = BusyRetryAfter.Milliseconds()
	return e
}

// call sends req to b and hands a successful answer to accept (nil: any),
// which reads what it needs and refuses an answer that breaks the
// contract. It returns the protocol error the client gets: the backend's
// own error, or unavailable, rate_limited, timeout or internal.
func (p *Proxy) call(ctx context.Context, b *backend, req *Request, accept func(*Response) error) error {
	name, kind := b.cfg.Name, req.Kind
	if err := p.acquire(ctx, b); err != nil {
		if ctx.Err() != nil {
			p.metrics.outcome(name, kind, outcomeCancelled)
			return protocol.Errorf(protocol.CodeTimeout, "request cancelled")
		}
		p.metrics.outcome(name, kind, outcomeBusy)
		return err
	}
	defer func() { <-b.sem }()
	p.metrics.inflight.WithLabelValues(name).Inc()
	defer p.metrics.inflight.WithLabelValues(name).Dec()

	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("proxy: encode request: %w", err)
	}
	start := time.Now()
	res, derr := p.d.Deliver(ctx, b.tg, delivery.Message{Body: body, ReadBody: b.cfg.MaxResponseBytes})
	p.metrics.seconds.WithLabelValues(name, kind).Observe(time.Since(start).Seconds())
	resp, perr, outcome := p.interpret(b, res, derr)
	if outcome == outcomeOK && accept != nil {
		if aerr := accept(resp); aerr != nil {
			perr, outcome, derr = protocol.Errorf(protocol.CodeInternal, "internal error"), outcomeInvalid, aerr
		}
	}
	p.metrics.outcome(name, kind, outcome)
	if derr == nil && (outcome == outcomeInvalid || outcome == outcomeTooLarge) {
		derr = fmt.Errorf("the answer (status %d, %d bytes) is not {\"result\": ...} or {\"error\": {...}} within max_response_bytes", res.Status, len(res.Body))
	}
	switch outcome {
	case outcomeOK, outcomeRefused, outcomeBreaker:
	case outcomeCancelled:
		p.log.Debug("proxy: request cancelled by the client", "backend", name, "kind", kind)
	default:
		p.log.Warn("proxy: backend request failed", "backend", name, "kind", kind, "method", req.Method, "outcome", outcome, "status", res.Status, "err", derr)
	}
	return perr
}

// interpret maps a delivery's end to the answer, the client's error and the
// metrics' outcome.
func (p *Proxy) interpret(b *backend, res delivery.Result, derr error) (*Response, error, string) {
	name := b.cfg.Name
	var resp *Response
	if res.Status != 0 && len(res.Body) > 0 && !res.BodyTruncated {
		var r Response
		if json.Unmarshal(res.Body, &r) == nil && (r.Error != nil || len(r.Result) > 0) {
			resp = &r
		}
	}
	switch {
	case derr == nil && resp == nil:
		if res.BodyTruncated {
			return nil, protocol.Errorf(protocol.CodeInternal, "internal error"), outcomeTooLarge
		}
		if len(res.Body) == 0 || isEmptyObject(res.Body) {
			return &Response{}, nil, outcomeOK // an empty answer allows a hook
		}
		return nil, protocol.Errorf(protocol.CodeInternal, "internal error"), outcomeInvalid
	case resp != nil && resp.Error != nil:
		return nil, p.backendError(b, resp.Error, res), outcomeRefused
	case derr == nil:
		return resp, nil, outcomeOK
	case errors.Is(derr, delivery.ErrBreakerOpen):
		e := protocol.Errorf(protocol.CodeUnavailable, "backend %s is unavailable (circuit open)", name)
		e.RetryAfterMs = FailureRetryAfter.Milliseconds()
		if st := p.d.Breaker(name); st.State == delivery.Open {
			e.RetryAfterMs = max(st.OpenUntil.Sub(p.clock.Now()).Milliseconds(), 1)
		}
		return nil, e, outcomeBreaker
	case errors.Is(derr, context.Canceled):
		return nil, protocol.Errorf(protocol.CodeTimeout, "request cancelled"), outcomeCancelled
	}
	var de *delivery.Error
	errors.As(derr, &de)
	switch {
	case de != nil && de.Stage == delivery.StageTimeout:
		e := protocol.Errorf(protocol.CodeUnavailable, "backend %s did not answer within %s", name, b.cfg.Timeout)
		e.RetryAfterMs = FailureRetryAfter.Milliseconds()
		return nil, e, outcomeTimeout
	case res.Status == 429:
		e := protocol.Errorf(protocol.CodeRateLimited, "backend %s is rate limiting", name)
		e.RetryAfterMs = retryAfterMs(res.RetryAfter)
		return nil, e, outcomeFailed
	case res.Status >= 500 || (de != nil && de.Stage == delivery.StageConnect):
		e := protocol.Errorf(protocol.CodeUnavailable, "backend %s is unavailable", name)
		e.RetryAfterMs = retryAfterMs(res.RetryAfter)
		return nil, e, outcomeFailed
	}
	// A 3xx or a 4xx without an error body, a refused address: the
	// backend or its configuration is wrong, which the client cannot fix.
	return nil, protocol.Errorf(protocol.CodeInternal, "internal error"), outcomeInvalid
}

func retryAfterMs(d time.Duration) int64 {
	if d <= 0 {
		return FailureRetryAfter.Milliseconds()
	}
	return d.Milliseconds()
}

// backendError turns a backend's error into the client's.
func (p *Proxy) backendError(b *backend, be *BackendError, res delivery.Result) *protocol.Error {
	code := be.Code
	if !backendCodes[code] {
		p.log.Warn("proxy: backend answered an error code clients do not know; sent as internal", "backend", b.cfg.Name, "code", code)
		return protocol.Errorf(protocol.CodeInternal, "internal error")
	}
	msg := be.Message
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	e := protocol.Errorf(code, "%s", strings.ToValidUTF8(msg, ""))
	e.Details = be.Details
	switch {
	case be.RetryAfterMs > 0:
		e.RetryAfterMs = be.RetryAfterMs
	case res.RetryAfter > 0:
		e.RetryAfterMs = res.RetryAfter.Milliseconds()
	}
	return e
}

func isEmptyObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && len(m) == 0
}
