package appsdk

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

var _ http.Handler = (*App)(nil)

// ServeHTTP serves the app's webhook URL (see the package documentation):
//
//	405  not a POST
//	401  signature, timestamp or webhook-id headers missing or wrong
//	413  a body over Options.MaxWebhookBytes
//	400  a body that is not a JSON object with a type, or a session.start
//	     for another app or without its ticket
//	503  the App is closed
//	202  session.start accepted: the session connects in the background
//	200  session.stop handled, a duplicate webhook-id, a type nobody handles
//
// Junction retries 429 and 5xx only, so a refusal here ends the delivery.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, msg, err := a.verifier.VerifyRequest(r, a.opts.MaxWebhookBytes)
	if err != nil {
		a.log.Info("appsdk: webhook refused", "err", err)
		if errors.Is(err, webhook.ErrBodyTooLarge) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "webhook not verified", http.StatusUnauthorized)
		return
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Type == "" {
		http.Error(w, "body is not a JSON object with a type", http.StatusBadRequest)
		return
	}
	if !a.seen.add(msg.ID) {
		a.log.Debug("appsdk: duplicate webhook", "id", msg.ID, "type", head.Type)
		w.WriteHeader(http.StatusOK)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	a.dispatchWebhook(sw, r, Webhook{ID: msg.ID, Type: head.Type, Timestamp: msg.Timestamp, Body: body})
	if sw.status/100 != 2 {
		a.seen.remove(msg.ID) // not handled: let Junction's retry through
	}
}

func (a *App) dispatchWebhook(w *statusWriter, r *http.Request, hook Webhook) {
	switch hook.Type {
	case protocol.WebhookSessionStart:
		a.serveStart(w, hook)
	case protocol.WebhookSessionStop:
		a.serveStop(w, r.Context(), hook)
	default:
		a.mu.Lock()
		fn := a.hooks[hook.Type]
		a.mu.Unlock()
		if fn == nil {
			a.log.Debug("appsdk: webhook type without a handler; ignored", "type", hook.Type, "id", hook.ID)
			w.WriteHeader(http.StatusOK)
			return
		}
		fn(w, r, hook)
		if w.status == 0 {
			w.status = http.StatusOK // net/http answers 200 for a handler that wrote nothing
		}
	}
}

// serveStart accepts a session.start and connects the session in the
// background, within the ticket's life.
func (a *App) serveStart(w http.ResponseWriter, hook Webhook) {
	var start protocol.AppSessionStartHook
	if err := json.Unmarshal(hook.Body, &start); err != nil {
		http.Error(w, "session.start: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.checkStart(start); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := a.launch(start.SessionID, start.UserID, start.WebSocketURL, start.Ticket, a.startDeadline(start)); err != nil {
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	a.log.Info("appsdk: session.start accepted", "session", start.SessionID, "resumed", start.Resumed)
	w.WriteHeader(http.StatusAccepted)
}

// stopCloseGrace is how long a session.stop webhook lets Junction's own
// close (app.stopped, then 1000) end the session's connection before the
// handle is ended.
const stopCloseGrace = 2 * time.Second

// serveStop ends the handle of a stopped session and tells OnStop.
func (a *App) serveStop(w http.ResponseWriter, ctx context.Context, hook Webhook) {
	var stop protocol.AppSessionStopHook
	if err := json.Unmarshal(hook.Body, &stop); err != nil || stop.SessionID == "" {
		http.Error(w, "session.stop without a sessionId", http.StatusBadRequest)
		return
	}
	if s := a.Session(stop.SessionID); s != nil {
		// Junction sends the session's connection app.stopped and closes it
		// with 1000 on its own; the webhook may come first. Give that close
		// a moment, so that app.stopped handlers run, then end the handle
		// regardless.
		s.markStopped(stop.Reason, nil)
		time.AfterFunc(stopCloseGrace, s.detach)
	} else if rec, ok, err := a.opts.Resume.Load(ctx, stop.SessionID); err == nil && ok {
		// A session this App does not hold (held by another instance, or
		// not reattached): its token is useless now.
		_ = a.opts.Resume.Delete(ctx, stop.SessionID, rec.Token)
	}
	a.log.Info("appsdk: session.stop", "session", stop.SessionID, "reason", stop.Reason, "stage", stop.Stage)
	if fn := a.opts.OnStop; fn != nil {
		fn(ctx, stop)
	}
	w.WriteHeader(http.StatusOK)
}

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dedupe remembers the last n webhook-ids: a bounded set, oldest evicted
// first. Junction retries one delivery within its budget (a minute or
// two), far less than n deliveries of one app.
type dedupe struct {
	mu   sync.Mutex     // leaf
	ids  map[string]int // guarded by mu: id → its slot in ring
	ring []string       // guarded by mu: ids in insertion order, len n
	next int            // guarded by mu: the ring slot to fill next
}

func newDedupe(n int) *dedupe {
	return &dedupe{ids: make(map[string]int, n), ring: make([]string, n)}
}

// add records id; false when it was there already.
func (d *dedupe) add(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.ids[id]; dup {
		return false
	}
	if old := d.ring[d.next]; old != "" && d.ids[old] == d.next {
		delete(d.ids, old)
	}
	d.ring[d.next] = id
	d.ids[id] = d.next
	d.next = (d.next + 1) % len(d.ring)
	return true
}

// remove forgets id.
func (d *dedupe) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.ids, id)
}
