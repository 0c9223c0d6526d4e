package apps

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Recovery of app sessions (docs/apps.md, "Recovery").
//
//   - The app's connection drops while the session runs: transport_down,
//     its grace (Config.Grace) ending at due_at. The app reattaches with its
//     resume token (beforeResume) and the session runs again; nothing it
//     held is dropped, since everything server-held is keyed by the session
//     id, which never changes.
//   - Grace over with the device online: resurrecting. A session.start
//     with resumed: true and a new single-use ticket goes at 0, 2, 5, 10,
//     20, 40, 60 s after, then every minute, until the app connects with
//     the ticket (running) or Config.ResurrectionBudget runs out (stopped,
//     app_error, with the last failure's stage). The app's circuit breaker
//     coalesces every session's attempts: while it is open no attempt
//     goes; while it is half-open, or after an attempt failed, one attempt
//     at a time goes (the probe) and the others wait; when an attempt is
//     accepted the waiting ones go at once.
//   - Grace over, or an attempt due, with the device offline: dormant; no
//     attempt is made. The device's next connection revives it
//     (resurrecting, attempt at once); after Config.DormantLimit it stops
//     with device_gone.
//
// Every timer is the session's due_at in the store. One loop per node
// (recoverLoop) reads the due sessions every Config.RecoveryInterval, on
// the service's clock, so timers survive a restart and tests move time
// instead of sleeping. A node acts on its own sessions, and on any
// session whose timer is overdue by orphanAfter (its node is gone),
// which it claims first (a new epoch). Every move is fenced by the epoch
// the node read, so two nodes never both act on one timer. When a node
// starts it claims its sessions (every session when it is the only node):
// running ones lost their app's connection with the old process and wait
// in transport_down for their grace.
//
// Hook point for server-held session state (device-stream
// subscriptions): moved is called after every recovery move; state keyed
// by the session id must be kept in every state but stopped (ended), and
// re-bound to the connection that Upgraded attaches.

// resurrectSchedule is when resurrection attempts go, after the session
// went resurrecting; then every resurrectEvery.
var resurrectSchedule = []time.Duration{0, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second}

const (
	resurrectEvery = time.Minute
	// orphanAfter is how overdue a timer must be before a node other than
	// the session's owner acts on it.
	orphanAfter = time.Minute
	// recoverBatch bounds the sessions one pass of the loop handles.
	recoverBatch = 256
	// deviceQueue bounds the device connections waiting to revive their
	// dormant sessions.
	deviceQueue = 1024
	// deviceBatchWait is how long the first of a burst of device
	// connections waits for others, so that their dormant sessions are read
	// in one query (a query per connection was a fifth of the server's CPU
	// at a few thousand connects a second); it delays a revival by as much,
	// which is little beside a resurrection's webhook. At 20 ms a query read
	// ~60 devices at 3,000 connects a second, ~300 µs, ~5 µs per connect;
	// at 100 ms the queries are full (store.MaxDevicesPerQuery)
	// from ~2,600 connects a second on.
	deviceBatchWait = 100 * time.Millisecond
)

// nextAttempt is when resurrection attempt n (0-based) is due.
func nextAttempt(since time.Time, n int64) time.Time {
	if n < int64(len(resurrectSchedule)) {
		return since.Add(resurrectSchedule[n])
	}
	last := resurrectSchedule[len(resurrectSchedule)-1]
	return since.Add(last + time.Duration(n-int64(len(resurrectSchedule))+1)*resurrectEvery)
}

// recovering reports whether a session in state waits on a recovery timer.
func recovering(state string) bool {
	return state == protocol.AppStateTransportDown || state == protocol.AppStateResurrecting || state == protocol.AppStateDormant
}

// recovery is this node's resurrection bookkeeping.
type recovery struct {
	mu      sync.Mutex              // leaf
	apps    map[string]*appRecovery // guarded by mu: app id →; an entry lives while it holds anything
	devices chan string             // set once in init: device ids that came online, drained by recoverLoop
	missed  atomic.Bool             // a device id did not fit in devices: recoverLoop sweeps the dormant sessions
	events  *prometheus.CounterVec  // set once in init
}

// appRecovery is one app's resurrection state on this node.
type appRecovery struct {
	inflight int                 // resurrection webhooks in flight
	failing  bool                // the last resurrection webhook failed: one at a time until one is accepted
	held     map[string]struct{} // sessions waiting for the probe or the breaker
}

// Recovery events (junction_app_session_recovery_total).
const (
	evTransportDown = "transport_down" // an app's connection dropped; grace began
	evResumed       = "resumed"        // an app reattached with its resume token
	evResurrecting  = "resurrecting"   // grace ended with the device online
	evAttempt       = "attempt"        // a resurrection webhook went
	evAccepted      = "accepted"       // the app accepted it
	evFailed        = "failed"         // it failed
	evHeld          = "held"           // an attempt waited for the breaker or the probe
	evDormant       = "dormant"        // the device was offline
	evRevived       = "revived"        // the device came back to a dormant session
	evGaveUp        = "gave_up"        // the resurrection budget ran out
	evDeviceGone    = "device_gone"    // the dormant limit passed
	evExpired       = "expired"        // a start's deadline passed after a restart
	evClaimed       = "claimed"        // sessions claimed at start or from a gone node
	evMissed        = "device_missed"  // a device's connection did not fit in the queue (a sweep follows)
)

func (r *recovery) init(reg prometheus.Registerer) {
	r.apps = map[string]*appRecovery{}
	r.devices = make(chan string, deviceQueue)
	r.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "junction_app_session_recovery_total",
		Help: "App session recovery events: transport_down, resumed, resurrecting, attempt, accepted, failed, held, dormant, revived, gave_up, device_gone, expired, claimed, device_missed.",
	}, []string{"event"})
	for _, e := range []string{evTransportDown, evResumed, evResurrecting, evAttempt, evAccepted, evFailed, evHeld, evDormant,
		evRevived, evGaveUp, evDeviceGone, evExpired, evClaimed, evMissed} {
		r.events.WithLabelValues(e)
	}
	if reg != nil {
		reg.MustRegister(r.events)
	}
}

func (s *Service) count(event string, n int) { s.rec.events.WithLabelValues(event).Add(float64(n)) }

// serviceClock is the service's clock for the deliverer: Now is
// Deps.Now; waits are wall time.
type serviceClock struct{ now func() time.Time }

func (c serviceClock) Now() time.Time { return c.now() }

func (c serviceClock) Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	return delivery.RealClock{}.Sleep(ctx, d, wake)
}

// startDeadline bounds a start: session.start delivered (with its
// retries), then the connect deadline. A starting session still starting
// after it (the node restarted meanwhile) fails at stage timeout.
func (s *Service) startDeadline() time.Duration {
	return s.cfg.WebhookBudget + s.cfg.WebhookTimeout + s.cfg.ConnectTimeout
}

// startRecovery claims this node's sessions and starts the loop.
func (s *Service) startRecovery() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	n, err := s.deps.Store.ClaimAppSessions(ctx, s.deps.Hub.NodeID(), s.deps.Solo, s.deps.Now().Add(s.cfg.Grace))
	cancel()
	if err != nil {
		s.log.Error("apps: claim the app sessions of this node", "err", err)
	} else if n > 0 {
		s.count(evClaimed, int(n))
		s.log.Info("app sessions claimed", "sessions", n, "node", s.deps.Hub.NodeID())
	}
	s.deps.Hub.Go(s.recoverLoop)
}

// recoverLoop runs the due timers every RecoveryInterval and revives the
// dormant sessions of devices that came online, until ctx ends.
func (s *Service) recoverLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RecoveryInterval)
	defer t.Stop()
	// Device connections are gathered for deviceBatchWait after the first
	// (or until store.MaxDevicesPerQuery came), then read in one query.
	var batch []string
	gather := time.NewTimer(deviceBatchWait)
	gather.Stop()
	defer gather.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-s.rec.devices:
			if len(batch) == 0 {
				gather.Reset(deviceBatchWait)
			}
			batch = s.moreDevices(append(batch, id))
			if len(batch) >= store.MaxDevicesPerQuery {
				gather.Stop()
				s.devicesBack(ctx, batch)
				batch = batch[:0]
			}
		case <-gather.C:
			s.devicesBack(ctx, batch)
			batch = batch[:0]
		case <-t.C:
			if s.rec.missed.Swap(false) {
				s.sweepDormant(ctx)
			}
			s.recoverDue(ctx)
		}
	}
}

// mine is the fence and claim of a move made on ss as read.
func (s *Service) mine(ss store.AppSession, mv store.AppSessionMove) store.AppSessionMove {
	mv.Epoch, mv.Claim, mv.Node = ss.Epoch, true, s.deps.Hub.NodeID()
	return mv
}

// move applies mv and logs a failure; ok reports that it changed the
// session.
func (s *Service) move(ctx context.Context, id string, mv store.AppSessionMove) (store.AppSession, bool) {
	ss, changed, err := s.deps.Store.MoveAppSession(ctx, id, mv)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("apps: record an app session's recovery", "session", id, "state", mv.State, "err", err)
		}
		return ss, false
	}
	return ss, changed
}

// moved follows every recovery move that changed a session but stopped
// it (ended does that): the device is told. The hook point for
// server-held session state.
func (s *Service) moved(ss store.AppSession) { s.tellDevice(ss) }

func (s *Service) recoverDue(ctx context.Context) {
	now := s.deps.Now()
	due, err := s.deps.Store.DueAppSessions(ctx, now, s.deps.Hub.NodeID(), now.Add(-orphanAfter), recoverBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("apps: read the due app sessions", "err", err)
		}
		return
	}
	var order []string
	byApp := map[string][]store.AppSession{}
	for _, ss := range due {
		if ss.Node != s.deps.Hub.NodeID() {
			s.count(evClaimed, 1)
		}
		switch ss.State {
		case protocol.AppStateStarting:
			s.startOverdue(ctx, ss)
		case protocol.AppStateTransportDown:
			s.graceOver(ctx, ss, now)
		case protocol.AppStateDormant:
			s.dormantOver(ctx, ss)
		case protocol.AppStateResurrecting:
			if s.attemptDue(ctx, ss, now) {
				if byApp[ss.AppID] == nil {
					order = append(order, ss.AppID)
				}
				byApp[ss.AppID] = append(byApp[ss.AppID], ss)
			}
		}
	}
	for _, app := range order {
		s.resurrect(ctx, app, byApp[app], now)
	}
}

// startOverdue fails a start whose deadline passed with no connect
// deadline in this node's memory: the node restarted meanwhile (or the
// start's node is gone).
func (s *Service) startOverdue(ctx context.Context, ss store.AppSession) {
	s.live.mu.Lock()
	_, here := s.live.m[ss.ID]
	s.live.mu.Unlock()
	if here {
		return // this process's own deadline (connectDeadline) decides
	}
	out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateStarting}, State: protocol.AppStateStopped,
		StopReason: protocol.StopAppError, Stage: protocol.StageTimeout, Error: "the app did not connect before the start's deadline"}))
	if ok {
		s.count(evExpired, 1)
		s.log.Info("app session failed", "app", ss.AppID, "session", ss.ID, "stage", protocol.StageTimeout)
		s.ended(out, true)
	}
}

// deviceOnline reports whether the session's device is connected to this
// node (the node that gets a device claims its sessions: deviceBack).
func (s *Service) deviceOnline(deviceID string) bool { return s.deps.Hub.ConnOfDevice(deviceID) != nil }

// graceOver: the app did not resume within grace. With its device here
// the session is resurrected, else it goes dormant.
func (s *Service) graceOver(ctx context.Context, ss store.AppSession, now time.Time) {
	mv := store.AppSessionMove{From: []string{protocol.AppStateTransportDown}}
	ev := evDormant
	if s.deviceOnline(ss.DeviceID) {
		ev = evResurrecting
		mv.State, mv.DueAt, mv.RecoverSince, mv.SetFailure = protocol.AppStateResurrecting, now, &now, true
	} else {
		mv.State, mv.DueAt = protocol.AppStateDormant, now.Add(s.cfg.DormantLimit)
	}
	if out, ok := s.move(ctx, ss.ID, s.mine(ss, mv)); ok {
		s.count(ev, 1)
		s.log.Info("app session "+out.State, "app", ss.AppID, "session", ss.ID, "after", "grace")
		s.moved(out)
	}
}

// dormantOver stops a session whose device stayed away DormantLimit.
func (s *Service) dormantOver(ctx context.Context, ss store.AppSession) {
	out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateDormant}, State: protocol.AppStateStopped,
		StopReason: protocol.StopDeviceGone, Error: fmt.Sprintf("the device stayed offline for %s", s.cfg.DormantLimit)}))
	if ok {
		s.count(evDeviceGone, 1)
		s.log.Info("app session stopped", "app", ss.AppID, "session", ss.ID, "reason", protocol.StopDeviceGone)
		s.ended(out, true)
	}
}

// lastFailure is the stage and error a resurrecting session's next
// attempt or end reports: the last failed attempt's, or, when the last
// attempt was accepted (its failure cleared), timeout.
func (s *Service) lastFailure(ss store.AppSession) (stage, msg string) {
	switch {
	case ss.Stage != "":
		return ss.Stage, ss.Error
	case ss.Attempts > 0:
		return protocol.StageTimeout, fmt.Sprintf("the app accepted session.start but did not connect within %s", s.cfg.ConnectTimeout)
	}
	return protocol.StageWebhook, "session.start not sent: the app's circuit breaker stayed open"
}

// attemptDue decides a due resurrecting session: dormant when its device
// is gone, stopped when the budget ran out, else (true) an attempt is due.
func (s *Service) attemptDue(ctx context.Context, ss store.AppSession, now time.Time) bool {
	if !s.deviceOnline(ss.DeviceID) {
		if out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateResurrecting},
			State: protocol.AppStateDormant, DueAt: now.Add(s.cfg.DormantLimit)})); ok {
			s.count(evDormant, 1)
			s.log.Info("app session dormant", "app", ss.AppID, "session", ss.ID)
			s.moved(out)
		}
		return false
	}
	if !now.Before(ss.RecoverSince.Add(s.cfg.ResurrectionBudget)) {
		stage, msg := s.lastFailure(ss)
		out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, State: protocol.AppStateStopped,
			StopReason: protocol.StopAppError, Stage: stage, SetFailure: true,
			Error: fmt.Sprintf("resurrection gave up after %d attempt(s) in %s; last: %s", ss.Attempts, s.cfg.ResurrectionBudget, msg)}))
		if ok {
			s.count(evGaveUp, 1)
			s.log.Info("app session failed", "app", ss.AppID, "session", ss.ID, "stage", stage, "attempts", ss.Attempts)
			s.ended(out, true)
		}
		return false
	}
	if next := nextAttempt(ss.RecoverSince, ss.Attempts); next.After(now) {
		s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, DueAt: next}))
		return false
	}
	return true
}

// resurrect makes the due attempts of one app's sessions, as the app's
// breaker allows: none while it is open (they wait for its open period);
// one (the probe) while it is half-open or the app's last attempt failed,
// the others waiting for its outcome; all when the app is healthy.
func (s *Service) resurrect(ctx context.Context, appID string, due []store.AppSession, now time.Time) {
	bs := s.deliv.Breaker(appID)
	open := bs.State == delivery.Open && now.Before(bs.OpenUntil)
	// This pass decides the due sessions afresh: one held by an earlier
	// pass must not be released (moved due now) by an attempt that ends
	// while this pass sends it, or it would be sent twice.
	s.rec.mu.Lock()
	if r := s.rec.apps[appID]; r != nil {
		for _, ss := range due {
			delete(r.held, ss.ID)
		}
	}
	s.rec.mu.Unlock()
	for _, ss := range due {
		s.rec.mu.Lock()
		r := s.rec.apps[appID]
		if r == nil {
			r = &appRecovery{held: map[string]struct{}{}}
			s.rec.apps[appID] = r
		}
		probing := r.failing || bs.State != delivery.Closed
		hold := open || (probing && r.inflight > 0)
		if hold {
			r.held[ss.ID] = struct{}{}
		} else {
			r.inflight++
			delete(r.held, ss.ID)
		}
		s.rec.mu.Unlock()
		if hold {
			until := now.Add(s.cfg.BreakerOpen)
			if open {
				until = bs.OpenUntil
			}
			if end := ss.RecoverSince.Add(s.cfg.ResurrectionBudget); end.Before(until) {
				until = end
			}
			s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, DueAt: until}))
			s.count(evHeld, 1)
			// Released meanwhile (the attempt it waited for was accepted
			// before the hold was recorded): due now, as the release made it.
			s.rec.mu.Lock()
			cur := s.rec.apps[appID]
			_, still := cur.heldSet()[ss.ID]
			s.rec.mu.Unlock()
			if !still {
				s.move(ctx, ss.ID, store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, DueAt: now})
			}
			continue
		}
		if !s.sendAttempt(ctx, ss, now) {
			s.attemptEnded(appID, false)
		}
	}
}

// heldSet returns r's held sessions; none for a nil r.
func (r *appRecovery) heldSet() map[string]struct{} {
	if r == nil {
		return nil
	}
	return r.held
}

// sendAttempt records attempt n+1 with a new ticket and sends its
// session.start; false when nothing was sent.
func (s *Service) sendAttempt(ctx context.Context, ss store.AppSession, now time.Time) bool {
	_, ticket, hash, err := newTicketFor(ss.ID)
	if err != nil {
		s.log.Error("apps: make a resurrection ticket", "session", ss.ID, "err", err)
		return false
	}
	stage, msg := "", ""
	if ss.Attempts > 0 {
		stage, msg = s.lastFailure(ss)
	}
	since := ss.RecoverSince
	// Until the webhook's outcome is recorded the timer covers it: a
	// restart in between makes the next attempt then.
	out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateResurrecting},
		DueAt: now.Add(s.cfg.WebhookTimeout + s.cfg.ConnectTimeout), RecoverSince: &since, Attempts: ss.Attempts + 1,
		SetFailure: true, Stage: stage, Error: msg, TicketHash: hash, TicketExpiresAt: now.Add(s.cfg.TicketTTL)}))
	if !ok {
		return false
	}
	kind := ""
	if dc := s.deps.Hub.ConnOfDevice(ss.DeviceID); dc != nil {
		kind = dc.Principal().Kind
	}
	hook := protocol.AppSessionStartHook{Type: "session.start", SessionID: ss.ID, AppID: ss.AppID, UserID: s.pseudonym(ss.AppID, ss.UserID),
		DeviceKind: kind, Capabilities: nonNil(ss.Capabilities), WebSocketURL: s.cfg.PublicURL, Ticket: ticket,
		TicketExpiresAt: out.TicketExpiresAt, Resumed: true}
	s.count(evAttempt, 1)
	s.log.Info("app session resurrection attempt", "app", ss.AppID, "session", ss.ID, "attempt", out.Attempts)
	s.moved(out)
	s.enqueueJob(ss.AppID, hook.Type, hook, true, func(_ delivery.Result, err error) { s.attemptDone(out, err) })
	return true
}

// attemptEnded updates the app's bookkeeping when an attempt ended
// (accepted or not) and returns the sessions that waited for an accepted
// one.
func (s *Service) attemptEnded(appID string, accepted bool) (released []string) {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	r := s.rec.apps[appID]
	if r == nil {
		return nil
	}
	r.inflight--
	r.failing = !accepted
	if accepted {
		for id := range r.held {
			released = append(released, id)
		}
		clear(r.held)
	}
	if r.inflight <= 0 && !r.failing && len(r.held) == 0 {
		delete(s.rec.apps, appID)
	}
	return released
}

// attemptDone records a resurrection webhook's outcome. Accepted: the
// app has until the connect deadline (and at least until the next step)
// to connect, and the app's waiting sessions go now. Failed: the next
// attempt is due at the next step.
func (s *Service) attemptDone(ss store.AppSession, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := s.deps.Now()
	next := nextAttempt(ss.RecoverSince, ss.Attempts)
	released := s.attemptEnded(ss.AppID, err == nil)
	fence := store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, Epoch: ss.Epoch}
	if err != nil {
		s.count(evFailed, 1)
		fence.DueAt, fence.SetFailure, fence.Stage, fence.Error = later(now, next), true, protocol.StageWebhook, webhookError(err)
		if errors.Is(err, errQueueFull) {
			fence.Error = "session.start not sent: " + err.Error()
		}
		if out, ok := s.move(ctx, ss.ID, fence); ok {
			s.moved(out)
		}
		return
	}
	s.count(evAccepted, 1)
	fence.DueAt, fence.SetFailure = later(now.Add(s.cfg.ConnectTimeout), next), true
	s.move(ctx, ss.ID, fence)
	for _, id := range released {
		s.move(ctx, id, store.AppSessionMove{From: []string{protocol.AppStateResurrecting}, DueAt: now})
	}
}

// deviceConnected is called for each device connection: its dormant
// sessions are revived by the loop (deviceBack).
func (s *Service) deviceConnected(deviceID string) {
	select {
	case s.rec.devices <- deviceID:
	default:
		// A burst of connections (after a restart, say): the loop's next
		// pass sweeps the dormant sessions instead.
		s.count(evMissed, 1)
		s.rec.missed.Store(true)
	}
}

// sweepDormant revives the dormant sessions whose device is connected
// here, after device connections were missed.
func (s *Service) sweepDormant(ctx context.Context) {
	devices := map[string]bool{}
	for after := ""; ; {
		page, err := s.deps.Store.AppSessionsInState(ctx, protocol.AppStateDormant, after, recoverBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("apps: sweep the dormant app sessions", "err", err)
			}
			return
		}
		for _, ss := range page {
			if !devices[ss.DeviceID] && s.deviceOnline(ss.DeviceID) {
				devices[ss.DeviceID] = true
				s.deviceBack(ctx, ss.DeviceID)
			}
		}
		if len(page) < recoverBatch {
			return
		}
		after = page[len(page)-1].ID
	}
}

// moreDevices adds to batch the device connections already queued, up to
// store.MaxDevicesPerQuery.
func (s *Service) moreDevices(batch []string) []string {
	for len(batch) < store.MaxDevicesPerQuery {
		select {
		case id := <-s.rec.devices:
			batch = append(batch, id)
		default:
			return batch
		}
	}
	return batch
}

// deviceBack revives a device's dormant sessions: this node claims them
// and resurrects each at once.
func (s *Service) deviceBack(ctx context.Context, deviceID string) {
	s.devicesBack(ctx, []string{deviceID})
}

// devicesBack is deviceBack for the devices listed (at most
// store.MaxDevicesPerQuery) that are still connected here.
func (s *Service) devicesBack(ctx context.Context, deviceIDs []string) {
	online := deviceIDs[:0:0]
	seen := make(map[string]bool, len(deviceIDs))
	for _, id := range deviceIDs {
		if !seen[id] && s.deviceOnline(id) { // not gone again
			seen[id] = true
			online = append(online, id)
		}
	}
	if len(online) == 0 {
		return
	}
	dormant, err := s.deps.Store.AppSessionsOfDevicesInState(ctx, protocol.AppStateDormant, online)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("apps: read the dormant app sessions of connected devices", "devices", len(online), "err", err)
		}
		return
	}
	now := s.deps.Now()
	for _, ss := range dormant {
		out, ok := s.move(ctx, ss.ID, s.mine(ss, store.AppSessionMove{From: []string{protocol.AppStateDormant}, State: protocol.AppStateResurrecting,
			DueAt: now, RecoverSince: &now, SetFailure: true}))
		if ok {
			s.count(evRevived, 1)
			s.log.Info("app session revived", "app", ss.AppID, "session", ss.ID, "device", ss.DeviceID)
			s.moved(out)
		}
	}
}

// persistConnectDeadline stores a started session's connect deadline, so
// that a restart fails it then (startOverdue).
func (s *Service) persistConnectDeadline(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.move(ctx, id, store.AppSessionMove{From: []string{protocol.AppStateStarting}, DueAt: s.deps.Now().Add(s.cfg.ConnectTimeout)})
}

// resumeSession: the app reattached with its resume token (from any state
// but stopped); the session runs again, owned by this node, its timers
// and the last recovery failure cleared.
func (s *Service) resumeSession(ctx context.Context, ss store.AppSession) error {
	var zero time.Time
	_, changed, err := s.deps.Store.MoveAppSession(ctx, ss.ID, store.AppSessionMove{State: protocol.AppStateRunning,
		RecoverSince: &zero, SetFailure: true, Claim: true, Node: s.deps.Hub.NodeID()})
	if err != nil {
		return err
	}
	if !changed {
		return protocol.Errorf(protocol.CodeConflict, "the app session stopped meanwhile").WithDetail("reason", "session_stopped")
	}
	if recovering(ss.State) {
		s.count(evResumed, 1)
		s.log.Info("app session resumed", "app", ss.AppID, "session", ss.ID, "from", ss.State)
	}
	return nil
}

// lostApp: the app's connection of a running session ended; the session
// waits for its grace in transport_down, owned by this node.
func (s *Service) lostApp(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, ok := s.move(ctx, id, store.AppSessionMove{From: []string{protocol.AppStateRunning}, State: protocol.AppStateTransportDown,
		DueAt: s.deps.Now().Add(s.cfg.Grace), Claim: true, Node: s.deps.Hub.NodeID()})
	if ok {
		s.count(evTransportDown, 1)
		s.moved(out)
	}
}

// newTicketFor returns a new start ticket jt_<id>_<secret> of an existing
// session (a resurrection's) and its hash.
func newTicketFor(id string) (string, string, []byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, err
	}
	ticket := ticketPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(ticket))
	return id, ticket, h[:], nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
