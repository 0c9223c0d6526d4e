package apps

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Webhooks: each app has a signing secret (whsec_), created with the app
// and rotated by the admin API, stored sealed with AES-256-GCM under the
// server's webhook key (Deps.SealKey; the app id is the associated data, so
// a sealed secret cannot be moved to another app). Deliveries go through
// one delivery.Deliverer (retries, address guard, a breaker per app, the
// attempt log) on a bounded queue drained by the supervised service Run.

// webhookJob is one delivery waiting for a worker.
type webhookJob struct {
	appID string
	event string // "session.start", for the log line
	body  []byte
	done  func(delivery.Result, error) // called once, on the worker
	// once makes a single attempt: a resurrection's schedule is its retry
	// (recovery.go).
	once bool
}

// seal encrypts a webhook secret for app id.
func (s *Service) seal(appID string, sec webhook.Secret) ([]byte, error) {
	gcm, err := s.gcm()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, []byte(sec.Encode()), []byte(appID)), nil
}

// unseal decrypts a sealed webhook secret of app id.
func (s *Service) unseal(appID string, sealed []byte) (webhook.Secret, error) {
	gcm, err := s.gcm()
	if err != nil {
		return webhook.Secret{}, err
	}
	if len(sealed) < gcm.NonceSize() {
		return webhook.Secret{}, errors.New("apps: unseal webhook secret: too short")
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(appID))
	if err != nil {
		return webhook.Secret{}, fmt.Errorf("apps: unseal webhook secret of %s (was the data directory's %s replaced?): %w", appID, auth.WebhookKeyFileName, err)
	}
	return webhook.ParseSecret(string(plain))
}

func (s *Service) gcm() (cipher.AEAD, error) {
	if len(s.deps.SealKey) < 32 {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "webhooks are not configured on this server (no seal key)")
	}
	b, err := aes.NewCipher(s.deps.SealKey[:32])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// newWebhookSecret creates, seals and stores a new secret for app, keeping
// the previous one signing until prevUntil (zero: dropped).
func (s *Service) newWebhookSecret(ctx context.Context, appID string, prevUntil time.Time, internal *bool) (protocol.AppWebhookSecret, error) {
	sec, err := webhook.NewSecret()
	if err != nil {
		return protocol.AppWebhookSecret{}, err
	}
	sealed, err := s.seal(appID, sec)
	if err != nil {
		return protocol.AppWebhookSecret{}, err
	}
	in := false
	if internal != nil {
		in = *internal
	}
	w, err := s.deps.Store.PutAppWebhook(ctx, appID, sealed, prevUntil, in, internal != nil)
	if err != nil {
		return protocol.AppWebhookSecret{}, err
	}
	out := protocol.AppWebhookSecret{AppID: appID, Secret: sec.Encode(), Internal: w.Internal}
	if !w.PrevUntil.IsZero() && len(w.Prev) > 0 {
		t := w.PrevUntil
		out.PreviousValidUntil = &t
	}
	return out, nil
}

func (s *Service) webhookOps() []account.Op {
	a := s.deps.Account
	return []account.Op{
		// Not idempotent, like apps.rotateKey: a replay would keep the
		// secret in clear.
		account.Define(a, account.Op{Name: "apps.rotateWebhookSecret", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/admin/apps/{id}/webhook-secret", Status: http.StatusCreated, OperationID: "rotateAppWebhookSecret",
				Summary: "Replace the app's webhook signing secret (shown only this once); the previous one keeps signing beside it for the overlap", Tag: "Apps",
				Body: "AppWebhookRotate", BodyOptional: true, Result: "AppWebhookSecret", PathParams: appPath}},
		}, protocol.AppWebhookSecret{}, checkWebhookRotate, s.rotateWebhookSecret),
		account.Define(a, account.Op{Name: "apps.deliveries", Scope: hub.ScopeAuthenticated, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/apps/{appId}/deliveries", Status: http.StatusOK, OperationID: "listAppDeliveries",
				Summary: "The app's recent webhook attempts, newest first (its owner, an admin, or the app's own key)", Tag: "Apps", Result: "AppDeliveryList",
				PathParams: map[string]string{"appId": "appId"},
				Query:      []account.QueryParam{{Name: "limit", Member: "limit", Type: "integer", Desc: "1..100 (default 50)", Min: 1, Max: store.MaxPageLimit}}}},
		}, protocol.AppDeliveryList{}, checkDeliveries, s.deliveries),
	}
}

func checkWebhookRotate(p *protocol.AppWebhookRotateParams) error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if p.OverlapMs != nil && *p.OverlapMs < 0 {
		return protocol.FieldError("overlapMs", "must not be negative")
	}
	return nil
}

func checkDeliveries(p *protocol.AppDeliveriesParams) error { return checkID("appId", p.AppID) }

func (s *Service) rotateWebhookSecret(ctx context.Context, pr *auth.Principal, p *protocol.AppWebhookRotateParams) (any, error) {
	if _, err := s.deps.Store.App(ctx, p.ID); err != nil {
		return nil, err
	}
	overlap := s.cfg.RotationOverlap
	if p.OverlapMs != nil {
		overlap = time.Duration(*p.OverlapMs) * time.Millisecond
	}
	var until time.Time
	if overlap > 0 {
		until = s.deps.Now().Add(overlap)
	}
	out, err := s.newWebhookSecret(ctx, p.ID, until, p.Internal)
	if err != nil {
		return nil, err
	}
	s.log.Info("app webhook secret rotated", "app", p.ID, "overlap", overlap, "internal", out.Internal, "by", pr.UserID)
	return out, nil
}

// mayReadApp reports whether pr may read app's operational data: an
// admin, the app's owner, or the app's own key.
func mayReadApp(pr *auth.Principal, app store.App) bool {
	switch {
	case pr.HasScope(auth.ScopeAdmin):
		return true
	case pr.AppID != "":
		return pr.AppID == app.ID && pr.UserID == ""
	default:
		return pr.UserID != "" && pr.UserID == app.Owner
	}
}

func (s *Service) deliveries(ctx context.Context, pr *auth.Principal, p *protocol.AppDeliveriesParams) (any, error) {
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	if !mayReadApp(pr, app) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only the app's owner, an admin or the app itself may read its deliveries")
	}
	limit := p.Limit
	if limit <= 0 {
		limit = store.DefaultPageLimit
	}
	out := protocol.AppDeliveryList{Deliveries: []protocol.AppDelivery{}}
	for _, a := range s.dlog.List(app.ID, limit) {
		out.Deliveries = append(out.Deliveries, protocol.AppDelivery{Delivery: a.Delivery, Attempt: a.Attempt, At: a.At,
			Stage: string(a.Stage), Status: a.Status, LatencyMs: a.Latency.Milliseconds(), Error: a.Error, RetryMs: a.Retry.Milliseconds()})
	}
	return out, nil
}

// target is where app's webhooks go, signed with its current secret (and
// the previous one during a rotation's overlap).
func (s *Service) target(ctx context.Context, appID string) (delivery.Target, error) {
	app, err := s.deps.Store.App(ctx, appID)
	if err != nil {
		return delivery.Target{}, err
	}
	if app.WebhookURL == "" {
		return delivery.Target{}, errors.New("the app has no webhook URL")
	}
	w, err := s.deps.Store.AppWebhookOf(ctx, appID)
	if errors.Is(err, store.ErrNotFound) {
		return delivery.Target{}, errors.New("the app has no webhook secret (rotate one: junction app rotate-webhook-secret)")
	}
	if err != nil {
		return delivery.Target{}, err
	}
	sec, err := s.unseal(appID, w.Sealed)
	if err != nil {
		return delivery.Target{}, err
	}
	t := delivery.Target{ID: appID, URL: app.WebhookURL, Secrets: []webhook.Secret{sec}, Internal: w.Internal, Policy: s.cfg.policy()}
	if len(w.Prev) > 0 && s.deps.Now().Before(w.PrevUntil) {
		if prev, err := s.unseal(appID, w.Prev); err == nil {
			t.Secrets = append(t.Secrets, prev)
		}
	}
	return t, nil
}

// errQueueFull: the webhook queue is full; the delivery was not made.
var errQueueFull = errors.New("the webhook queue is full")

// enqueue queues a delivery of body to app's webhook; done is called once
// with its end, on a worker (or at once, on this goroutine, when the queue
// is full).
func (s *Service) enqueue(appID, event string, body any, done func(delivery.Result, error)) {
	s.enqueueJob(appID, event, body, false, done)
}

// enqueueJob is enqueue, with once: a single attempt.
func (s *Service) enqueueJob(appID, event string, body any, once bool, done func(delivery.Result, error)) {
	raw, err := json.Marshal(body)
	if err != nil {
		done(delivery.Result{}, err)
		return
	}
	select {
	case s.jobs <- webhookJob{appID: appID, event: event, body: raw, done: done, once: once}:
	default:
		s.log.Warn("apps: webhook queue full; delivery dropped", "app", appID, "event", event)
		done(delivery.Result{}, errQueueFull)
	}
}

// Run delivers queued webhooks with Config.WebhookWorkers workers until
// ctx ends: the supervised service "apps.webhooks". Deliveries in flight
// when ctx ends are cancelled (their sessions fail at stage webhook);
// queued ones wait for the next Run.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	for range s.cfg.WebhookWorkers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-s.jobs:
					s.deliver(ctx, j)
				}
			}
		}()
	}
	for range s.cfg.WebhookWorkers {
		<-done
	}
	return nil
}

func (s *Service) deliver(ctx context.Context, j webhookJob) {
	t, err := s.target(ctx, j.appID)
	if err != nil {
		j.done(delivery.Result{}, &delivery.Error{Stage: delivery.StageGuard, Err: err})
		return
	}
	if j.once {
		t.Policy.MaxAttempts = 1
	}
	res, err := s.deliv.Deliver(ctx, t, delivery.Message{Body: j.body, Header: http.Header{"Junction-Event": {j.event}}})
	if err != nil {
		s.log.Info("apps: webhook not delivered", "app", j.appID, "event", j.event, "delivery", res.ID, "err", err)
	}
	j.done(res, err)
}

// Close stops the connect deadlines (their sessions stay starting in the
// store) and closes the deliverer's idle connections. Call after Run ended.
func (s *Service) Close() {
	s.live.mu.Lock()
	for _, ls := range s.live.m {
		if ls.deadline != nil {
			ls.deadline.Stop()
		}
	}
	s.live.mu.Unlock()
	s.deliv.Close()
}
