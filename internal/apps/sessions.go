package apps

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// App sessions (docs/apps.md, "Session lifecycle"). A device starts an app
// (apps.startSession): the session is stored as starting with the hash of
// a single-use ticket, and the signed session.start webhook carries the
// ticket to the app's backend. The backend dials /ws with its API key and
// the ticket (TicketHeader); BeforeUpgrade checks both before the upgrade
// and marks the session running. A failure at any step stops the session
// with a stage the device is told (app.session events). Stop is
// idempotent: session.stop webhook, app.stopped on the app's socket, then
// close 1000. apps.hello issues a resume token with which a new
// connection of the app reattaches (ResumeHeader), after the app's server
// or the gateway restarted.

// TicketHeader carries an app session's start ticket at the WebSocket
// upgrade, beside the app's API key.
const TicketHeader = protocol.HeaderAppTicket

// ResumeHeader carries an app session's resume token (apps.hello) at the
// upgrade, beside the app's API key: the connection reattaches to the
// session.
const ResumeHeader = protocol.HeaderAppResume

const (
	ticketPrefix = "jt_"
	resumePrefix = "jr_"
)

// liveSessions are this node's sessions that wait for their app or have
// its connection.
type liveSessions struct {
	mu sync.Mutex              // leaf
	m  map[string]*liveSession // guarded by mu: session id →
}

type liveSession struct {
	deadline *time.Timer // the connect deadline, armed once session.start was accepted
	conn     *hub.Conn   // the app's connection, once upgraded
}

func (l *liveSessions) get(id string) *liveSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[id]
	if ls == nil {
		ls = &liveSession{}
		l.m[id] = ls
	}
	return ls
}

// take forgets a session and returns what was live of it.
func (l *liveSessions) take(id string) (conn *hub.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.m[id]
	delete(l.m, id)
	if ls == nil {
		return nil
	}
	if ls.deadline != nil {
		ls.deadline.Stop()
	}
	return ls.conn
}

func (s *Service) sessionOps() []account.Op {
	a := s.deps.Account
	sessionPath := map[string]string{"appId": "appId", "sessionId": "sessionId"}
	return []account.Op{
		account.Define(a, account.Op{Name: "apps.startSession", Scope: hub.ScopeAuthenticated, WS: true, NoApps: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/apps/{appId}/sessions", Status: http.StatusOK, OperationID: "startAppSession",
				Summary: "Start an app on the caller's device: the app's backend gets session.start and connects; app.session events follow", Tag: "Apps",
				Body: "AppSessionStartRequest", BodyOptional: true, Result: "AppSessionStarted", PathParams: map[string]string{"appId": "appId"}}},
		}, protocol.AppSessionStarted{}, checkStart, s.startSession),
		account.Define(a, account.Op{Name: "apps.stopSession", Scope: hub.ScopeAuthenticated, WS: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/apps/{appId}/sessions/{sessionId}/stop", Status: http.StatusOK, OperationID: "stopAppSession",
				Summary: "Stop an app session (its user, or an admin); stopping a stopped session answers alreadyStopped", Tag: "Apps",
				Result: "AppSessionStopped", PathParams: sessionPath}},
		}, protocol.AppSessionStopped{}, checkSessionRef, s.stopSession),
		account.Define(a, account.Op{Name: "apps.sessions", Scope: hub.ScopeAuthenticated, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/apps/{appId}/sessions", Status: http.StatusOK, OperationID: "listAppSessions",
				Summary: "The app's sessions in id order (the app's own key, its owner, or an admin)", Tag: "Apps", Result: "AppSessionList",
				PathParams: map[string]string{"appId": "appId"},
				Query: []account.QueryParam{{Name: "state", Member: "state", Type: "string", Desc: "only sessions in this state"},
					{Name: "after", Member: "after", Type: "string", Desc: "next of the previous page"},
					{Name: "limit", Member: "limit", Type: "integer", Desc: "page size, 1..100 (default 50)", Min: 1, Max: store.MaxPageLimit}}}},
		}, protocol.AppSessionList{}, checkSessionList, s.sessions),
		// WebSocket only: the app's connection asks once it is up.
		account.Define(a, account.Op{Name: "apps.hello", Scope: hub.ScopeAuthenticated, WS: true}, protocol.AppHello{}, checkSessionRef, s.hello),
	}
}

func checkStart(p *protocol.AppSessionStartParams) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	return checkWords("capabilities", p.Capabilities, maxScopes)
}

func checkSessionRef(p *protocol.AppSessionRef) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	if p.SessionID == "" || len(p.SessionID) > 64 {
		return protocol.FieldError("sessionId", "want 1..64 bytes")
	}
	return nil
}

func checkSessionList(p *protocol.AppSessionListParams) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	if p.State != "" && !slices.Contains([]string{protocol.AppStateStarting, protocol.AppStateRunning, protocol.AppStateTransportDown,
		protocol.AppStateResurrecting, protocol.AppStateDormant, protocol.AppStateStopped}, p.State) {
		return protocol.FieldError("state", "want starting, running, transport_down, resurrecting, dormant or stopped")
	}
	return checkPage(p.After, p.Limit)
}

func wireSession(ss store.AppSession) protocol.AppSession {
	out := protocol.AppSession{ID: ss.ID, AppID: ss.AppID, DeviceID: ss.DeviceID, State: ss.State, StopReason: ss.StopReason,
		Stage: ss.Stage, Error: ss.Error, CreatedAt: ss.CreatedAt, UpdatedAt: ss.UpdatedAt, Attempts: ss.Attempts}
	if recovering(ss.State) && !ss.DueAt.IsZero() {
		t := ss.DueAt
		out.NextAt = &t
	}
	return out
}

// stageError is a refused start: the protocol error carries the stage.
func stageError(code protocol.Code, stage, format string, args ...any) *protocol.Error {
	return protocol.Errorf(code, format, args...).WithDetail("stage", stage)
}

func (s *Service) startSession(ctx context.Context, pr *auth.Principal, p *protocol.AppSessionStartParams) (any, error) {
	if pr.DeviceID == "" || pr.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a device's credential may start an app session")
	}
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	if _, err := s.deps.Store.Install(ctx, app.ID, pr.UserID); errors.Is(err, store.ErrNotFound) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed app %q", app.ID).WithDetail("reason", auth.ReasonNotInstalled)
	} else if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range app.Capabilities {
		if !slices.Contains(p.Capabilities, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, stageError(protocol.CodeForbidden, protocol.StageCapability, "the device lacks capabilities the app requires: %v", missing).
			WithDetail("missing", missing)
	}
	active, err := s.deps.Store.ActiveAppSessionsOfDevice(ctx, pr.DeviceID)
	if err != nil {
		return nil, err
	}
	// One session per app and device: a second start while one is starting
	// or running answers it (a retried start never makes a duplicate).
	for _, ss := range active {
		if ss.AppID == app.ID && (ss.State == protocol.AppStateStarting || ss.State == protocol.AppStateRunning) {
			return protocol.AppSessionStarted{Session: wireSession(ss), Existing: true}, nil
		}
	}
	out := protocol.AppSessionStarted{}
	// One foreground app per device: starting one stops the others. A
	// session of this app whose connection was lost (transport_down) is
	// replaced too: the device asked for the app again.
	for _, ss := range active {
		if ss.AppID == app.ID && ss.Kind != "foreground" {
			if _, _, err := s.stop(ctx, ss.ID, protocol.StopAppError); err != nil {
				return nil, err
			}
			out.Replaced = append(out.Replaced, ss.ID)
		}
	}
	if app.Kind == "foreground" {
		for _, ss := range active {
			if ss.Kind == "foreground" {
				if _, _, err := s.stop(ctx, ss.ID, protocol.StopReplacedByForeground); err != nil {
					return nil, err
				}
				out.Replaced = append(out.Replaced, ss.ID)
			}
		}
	}
	id, ticket, hash, err := newTicket()
	if err != nil {
		return nil, err
	}
	now := s.deps.Now()
	ss, err := s.deps.Store.CreateAppSession(ctx, store.AppSession{ID: id, AppID: app.ID, UserID: pr.UserID, DeviceID: pr.DeviceID,
		Kind: app.Kind, State: protocol.AppStateStarting, Capabilities: p.Capabilities, TicketHash: hash,
		TicketExpiresAt: now.Add(s.cfg.TicketTTL), Node: s.deps.Hub.NodeID(), DueAt: now.Add(s.startDeadline())})
	if err != nil {
		return nil, err
	}
	s.live.get(id)
	hook := protocol.AppSessionStartHook{Type: "session.start", SessionID: id, AppID: app.ID, UserID: s.pseudonym(app.ID, pr.UserID),
		DeviceKind: pr.Kind, Capabilities: nonNil(p.Capabilities), WebSocketURL: s.cfg.PublicURL, Ticket: ticket,
		TicketExpiresAt: ss.TicketExpiresAt}
	s.enqueue(app.ID, hook.Type, hook, func(res delivery.Result, err error) { s.started(id, err) })
	s.log.Info("app session starting", "app", app.ID, "session", id, "user", pr.UserID, "device", pr.DeviceID)
	out.Session = wireSession(ss)
	return out, nil
}

// started handles the end of a session.start delivery: accepted arms the
// connect deadline, anything else fails the session at stage webhook.
func (s *Service) started(id string, err error) {
	if err != nil {
		s.fail(id, protocol.StageWebhook, webhookError(err), false)
		return
	}
	s.live.mu.Lock()
	ls := s.live.m[id]
	arm := ls != nil && ls.conn == nil
	if arm {
		ls.deadline = time.AfterFunc(s.cfg.ConnectTimeout, func() { s.connectDeadline(id) })
	}
	s.live.mu.Unlock()
	if arm {
		s.persistConnectDeadline(id)
	}
}

// connectDeadline fails a session still starting when its connect
// deadline passes: the app never presented its ticket. A session whose
// ticket was used is left alone, since the app may have connected to
// another node of a cluster (this node's live map knows only its own
// connections); an upgrade that failed after the ticket check leaves the
// session running without a connection until it is stopped or the app
// connects again with a resume token (it has none yet: known limit).
func (s *Service) connectDeadline(id string) {
	s.live.mu.Lock()
	ls := s.live.m[id]
	waiting := ls != nil && ls.conn == nil
	s.live.mu.Unlock()
	if !waiting {
		return
	}
	msg := fmt.Sprintf("the app did not connect within %s of accepting session.start", s.cfg.ConnectTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, changed, err := s.deps.Store.SetAppSessionState(ctx, id, protocol.AppStateStarting, protocol.AppStateStopped, protocol.StopAppError, protocol.StageTimeout, msg)
	if err != nil {
		s.log.Error("apps: record a failed app session", "session", id, "stage", protocol.StageTimeout, "err", err)
		return
	}
	if changed {
		s.log.Info("app session failed", "app", ss.AppID, "session", id, "stage", protocol.StageTimeout, "err", msg)
		s.ended(ss, true)
	}
}

// webhookError says why a webhook failed, for the device and the log.
func webhookError(err error) string {
	var de *delivery.Error
	switch {
	case errors.As(err, &de) && errors.Is(err, delivery.ErrBreakerOpen):
		return "session.start not sent: the app's circuit breaker is open (its webhooks failed repeatedly)"
	case errors.As(err, &de) && de.Status != 0:
		return fmt.Sprintf("session.start answered %d after %d attempt(s)", de.Status, de.Attempts)
	case errors.As(err, &de):
		return fmt.Sprintf("session.start failed at %s: %v", de.Stage, de.Err)
	}
	return "session.start failed: " + err.Error()
}

// fail stops a session that is still starting, with reason app_error
// and the failure's stage; hook sends session.stop (the app had accepted
// session.start).
func (s *Service) fail(id, stage, msg string, hook bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, changed, err := s.deps.Store.SetAppSessionState(ctx, id, protocol.AppStateStarting, protocol.AppStateStopped, protocol.StopAppError, stage, msg)
	if err != nil {
		s.log.Error("apps: record a failed app session", "session", id, "stage", stage, "err", err)
		return
	}
	if !changed {
		return
	}
	s.log.Info("app session failed", "app", ss.AppID, "session", id, "stage", stage, "err", msg)
	s.ended(ss, hook)
}

// ended follows a session's move to stopped: the app's socket is told and
// closed, the device is told, and session.stop goes when hook is set.
func (s *Service) ended(ss store.AppSession, hook bool) { s.endedBy(nil, ss, hook) }

// callKey is the context key of the *hub.Call a WebSocket op runs for.
type callKey struct{}

// endedBy is ended for a stop that call made (nil: none, or over REST).
// When the call came over the session's own connection (an app stopping
// its session), that connection is closed once the call's answer is
// queued: the answer comes before the close, as every answer does.
func (s *Service) endedBy(call *hub.Call, ss store.AppSession, hook bool) {
	s.streams.drop(ss.ID)
	s.outs.sessionEnded(ss.ID, ss.DeviceID)
	if c := s.live.take(ss.ID); c != nil {
		data, _ := json.Marshal(protocol.AppStopped{SessionID: ss.ID, Reason: ss.StopReason, Reconnect: false})
		c.SendEvent(protocol.EventAppStopped, "", "", 0, data)
		closeConn := func() { c.Close(protocol.CloseNormal, "app session stopped: "+ss.StopReason) }
		if call != nil && call.Conn == c {
			call.AfterReply(closeConn)
		} else {
			closeConn()
		}
	}
	s.tellDevice(ss)
	if hook {
		body := protocol.AppSessionStopHook{Type: "session.stop", SessionID: ss.ID, AppID: ss.AppID, UserID: s.pseudonym(ss.AppID, ss.UserID),
			Reason: ss.StopReason, Stage: ss.Stage}
		s.enqueue(ss.AppID, body.Type, body, func(_ delivery.Result, err error) {
			if err != nil {
				s.log.Info("apps: session.stop not delivered", "app", ss.AppID, "session", ss.ID, "err", err)
			}
		})
	}
}

// tellDevice sends the session's state to its device, if connected here.
func (s *Service) tellDevice(ss store.AppSession) {
	c := s.deps.Hub.ConnOfDevice(ss.DeviceID)
	if c == nil {
		return
	}
	data, _ := json.Marshal(wireSession(ss))
	c.SendEvent(protocol.EventAppSession, "", "", 0, data)
}

// stop stops a session for reason; an already stopped one is returned
// unchanged (changed false).
func (s *Service) stop(ctx context.Context, id, reason string) (store.AppSession, bool, error) {
	before, err := s.deps.Store.AppSessionByID(ctx, id)
	if err != nil {
		return store.AppSession{}, false, err
	}
	ss, changed, err := s.deps.Store.SetAppSessionState(ctx, id, "", protocol.AppStateStopped, reason, "", "")
	if err != nil || !changed {
		return ss, false, err
	}
	s.log.Info("app session stopped", "app", ss.AppID, "session", id, "reason", reason)
	// session.stop goes unless session.start is still in flight with
	// nothing accepted yet (then the backend never had the session).
	call, _ := ctx.Value(callKey{}).(*hub.Call)
	s.endedBy(call, ss, before.State != protocol.AppStateStarting || s.accepted(id))
	return ss, true, nil
}

// stopUserSessions stops a user's sessions of an app (an uninstall). A
// failure is logged: the uninstall itself stands, and the sessions' app
// can no longer act for the user.
func (s *Service) stopUserSessions(ctx context.Context, appID, userID, reason string) {
	ss, err := s.deps.Store.ActiveAppSessionsOfUser(ctx, appID, userID)
	if err != nil {
		s.log.Error("apps: find the sessions of an uninstalled app", "app", appID, "user", userID, "err", err)
		return
	}
	for _, x := range ss {
		if _, _, err := s.stop(ctx, x.ID, reason); err != nil {
			s.log.Error("apps: stop the session of an uninstalled app", "app", appID, "session", x.ID, "err", err)
		}
	}
}

// accepted reports whether a starting session's session.start was
// accepted (its connect deadline is armed).
func (s *Service) accepted(id string) bool {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	ls := s.live.m[id]
	return ls != nil && ls.deadline != nil
}

// sessionFor returns a session that pr may see: its user (not another
// app), the app's own key or the app acting for the session's user, or an
// admin; anything else is not_found, so that a foreign session id reveals
// nothing.
func (s *Service) sessionFor(ctx context.Context, pr *auth.Principal, appID, id string) (store.AppSession, error) {
	ss, err := s.deps.Store.AppSessionByID(ctx, id)
	if err != nil {
		return store.AppSession{}, err
	}
	ok := ss.AppID == appID
	switch {
	case !ok:
	case pr.HasScope(auth.ScopeAdmin):
	case pr.AppID != "":
		ok = pr.AppID == ss.AppID && (pr.UserID == "" || pr.UserID == ss.UserID)
	default:
		ok = pr.UserID == ss.UserID
	}
	if !ok {
		return store.AppSession{}, protocol.Errorf(protocol.CodeNotFound, "no app session %q of app %q", id, appID)
	}
	return ss, nil
}

func (s *Service) stopSession(ctx context.Context, pr *auth.Principal, p *protocol.AppSessionRef) (any, error) {
	ss, err := s.sessionFor(ctx, pr, p.AppID, p.SessionID)
	if err != nil {
		return nil, err
	}
	reason := protocol.StopUserStopped
	switch {
	case pr.AppID != "":
		reason = protocol.StopAppError
	case pr.HasScope(auth.ScopeAdmin) && pr.UserID != ss.UserID:
		reason = protocol.StopAdmin
	}
	out, changed, err := s.stop(ctx, ss.ID, reason)
	if err != nil {
		return nil, err
	}
	return protocol.AppSessionStopped{Session: wireSession(out), AlreadyStopped: !changed}, nil
}

func (s *Service) sessions(ctx context.Context, pr *auth.Principal, p *protocol.AppSessionListParams) (any, error) {
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	if !mayReadApp(pr, app) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only the app's own key, its owner or an admin may list its sessions")
	}
	ss, more, err := s.deps.Store.AppSessionsOfApp(ctx, app.ID, p.State, p.After, p.Limit)
	if err != nil {
		return nil, err
	}
	out := protocol.AppSessionList{Sessions: []protocol.AppSession{}}
	for _, x := range ss {
		out.Sessions = append(out.Sessions, wireSession(x))
	}
	if more {
		out.Next = ss[len(ss)-1].ID
	}
	return out, nil
}

func (s *Service) hello(ctx context.Context, pr *auth.Principal, p *protocol.AppSessionRef) (any, error) {
	if pr.AppID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "apps.hello is for an app's session connection")
	}
	ss, err := s.sessionFor(ctx, pr, p.AppID, p.SessionID)
	if err != nil {
		return nil, err
	}
	if ss.State == protocol.AppStateStopped {
		return nil, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", ss.StopReason)
	}
	app, err := s.deps.Store.App(ctx, ss.AppID)
	if err != nil {
		return nil, err
	}
	granted, err := s.InstalledScopes(ctx, ss.AppID, ss.UserID)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed the app").WithDetail("reason", auth.ReasonNotInstalled)
	}
	out := protocol.AppHello{SessionID: ss.ID, AppID: ss.AppID, UserID: s.pseudonym(ss.AppID, ss.UserID),
		Scopes:   auth.IntersectScopes(app.Scopes, granted),
		Settings: protocol.AppSettings{Schema: app.SettingsSchema}, Capabilities: nonNil(ss.Capabilities),
		Device: protocol.AppDeviceState{Online: s.deps.Hub.ConnOfDevice(ss.DeviceID) != nil}, Priority: app.Priority}
	out.Subscriptions, out.SubscriptionSeq = s.streams.get(ss.ID)
	if dc := s.deps.Hub.ConnOfDevice(ss.DeviceID); dc != nil {
		out.Device.Kind = dc.Principal().Kind
	}
	if at, ok := s.deps.Hub.LastSeen(ss.DeviceID); ok {
		out.Device.LastSeen = &at
	}
	if out.Settings.Values, out.Settings.Version, err = s.settingsOf(ctx, ss.AppID, ss.UserID); err != nil {
		return nil, err
	}
	token, hash, err := newSecretToken(resumePrefix, ss.ID)
	if err != nil {
		return nil, err
	}
	if err := s.deps.Store.SetAppSessionResume(ctx, ss.ID, hash); err != nil {
		return nil, err
	}
	out.ResumeToken = token
	return out, nil
}

// pseudonym is the app's id of a user: an HMAC under the pepper, the same
// for every session, different for every app.
func (s *Service) pseudonym(appID, userID string) string {
	m := hmac.New(sha256.New, s.deps.Pepper)
	m.Write([]byte("junction app user\x00" + appID + "\x00" + userID))
	return "pu_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// newTicket returns a session id, its start ticket jt_<id>_<secret> and
// the ticket's hash.
func newTicket() (id, ticket string, hash []byte, err error) {
	b := make([]byte, 12+32)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, err
	}
	id = "as" + hex.EncodeToString(b[:12])
	ticket = ticketPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[12:])
	h := sha256.Sum256([]byte(ticket))
	return id, ticket, h[:], nil
}

// newSecretToken returns prefix<id>_<256-bit secret> and its hex SHA-256.
func newSecretToken(prefix, id string) (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = prefix + id + "_" + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(h[:]), nil
}

// parseTicket returns the session id a ticket names.
func parseTicket(t string) (string, bool) { return parseToken(ticketPrefix, t) }

// parseToken returns the session id a ticket or resume token names.
func parseToken(prefix, t string) (string, bool) {
	rest, ok := strings.CutPrefix(t, prefix)
	if !ok || len(t) > 128 {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	return id, ok && strings.HasPrefix(id, "as") && secret != ""
}

// ticketRefused is the refusal of a connection's ticket: unauthorized
// with a reason (ticket_invalid, ticket_used, ticket_expired).
func ticketRefused(reason, msg string) error {
	return protocol.Errorf(protocol.CodeUnauthorized, "%s", msg).WithDetail("reason", reason)
}

// BeforeUpgrade checks an app session's connection before its upgrade
// (web.UpgradeHook): a request with ResumeHeader reattaches (beforeResume);
// a request without TicketHeader passes unchanged; one
// with it needs an app's own key and the valid, unused, unexpired ticket
// of one of that app's starting sessions. The ticket is used up here and
// the session marked running; the connection's principal acts for the
// session's user with the scopes the user granted.
func (s *Service) BeforeUpgrade(r *http.Request, p *auth.Principal) (*auth.Principal, error) {
	if tok := r.Header.Get(ResumeHeader); tok != "" {
		return s.beforeResume(r, p, tok)
	}
	ticket := r.Header.Get(TicketHeader)
	if ticket == "" {
		return p, nil
	}
	ctx := r.Context()
	if p.AppID == "" || p.UserID != "" {
		return nil, ticketRefused("ticket_invalid", "a start ticket goes with the app's own API key")
	}
	id, ok := parseTicket(ticket)
	if !ok {
		return nil, ticketRefused("ticket_invalid", "malformed start ticket")
	}
	ss, err := s.deps.Store.AppSessionByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ticketRefused("ticket_invalid", "unknown start ticket")
	}
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(ticket))
	if subtle.ConstantTimeCompare(h[:], ss.TicketHash) != 1 {
		return nil, ticketRefused("ticket_invalid", "unknown start ticket")
	}
	if ss.AppID != p.AppID {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the start ticket is another app's").WithDetail("reason", "foreign_session")
	}
	if !ss.TicketUsedAt.IsZero() {
		return nil, ticketRefused("ticket_used", "the start ticket was used already")
	}
	if ss.State == protocol.AppStateStopped {
		return nil, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", "session_stopped")
	}
	if !s.deps.Now().Before(ss.TicketExpiresAt) {
		s.fail(ss.ID, protocol.StageConnect, "the app connected after its start ticket expired", true)
		return nil, ticketRefused("ticket_expired", "the start ticket expired")
	}
	granted, err := s.InstalledScopes(ctx, ss.AppID, ss.UserID)
	if errors.Is(err, auth.ErrNotInstalled) {
		s.fail(ss.ID, protocol.StageAuth, "the user no longer has the app installed", true)
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed this app").WithDetail("reason", auth.ReasonNotInstalled)
	}
	if err != nil {
		return nil, err
	}
	ss, err = s.deps.Store.UseAppSessionTicket(ctx, ss.ID, s.deps.Now())
	switch {
	case errors.Is(err, store.ErrTicketUsed):
		return nil, ticketRefused("ticket_used", "the start ticket was used already")
	case errors.Is(err, store.ErrConflict) && ss.State == protocol.AppStateStopped:
		return nil, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", "session_stopped")
	case errors.Is(err, store.ErrConflict):
		// The app resumed the session with its token meanwhile (a
		// resurrection's ticket, still pending, no longer applies).
		return nil, protocol.Errorf(protocol.CodeConflict, "the app session was resumed meanwhile (%s): this start ticket no longer applies", ss.State).WithDetail("reason", "session_resumed")
	case err != nil:
		return nil, err
	}
	np := *p
	np.UserID = ss.UserID
	np.Scopes = auth.IntersectScopes(p.Scopes, granted)
	return &np, nil
}

// beforeResume checks a reattaching connection: the app's own key and the
// session's latest resume token; the session must not be stopped. It goes
// back to running (the device is told in Upgraded); a connection the
// session still had on this node is replaced (4009).
func (s *Service) beforeResume(r *http.Request, p *auth.Principal, tok string) (*auth.Principal, error) {
	ctx := r.Context()
	if p.AppID == "" || p.UserID != "" {
		return nil, ticketRefused("resume_invalid", "a resume token goes with the app's own API key")
	}
	id, ok := parseToken(resumePrefix, tok)
	if !ok {
		return nil, ticketRefused("resume_invalid", "malformed resume token")
	}
	ss, err := s.deps.Store.AppSessionByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ticketRefused("resume_invalid", "unknown resume token")
	}
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(tok))
	if ss.ResumeHash == "" || subtle.ConstantTimeCompare([]byte(hex.EncodeToString(h[:])), []byte(ss.ResumeHash)) != 1 {
		return nil, ticketRefused("resume_invalid", "unknown or superseded resume token")
	}
	if ss.AppID != p.AppID {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the resume token is another app's").WithDetail("reason", "foreign_session")
	}
	if ss.State == protocol.AppStateStopped {
		return nil, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", "session_stopped")
	}
	granted, err := s.InstalledScopes(ctx, ss.AppID, ss.UserID)
	if errors.Is(err, auth.ErrNotInstalled) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed this app").WithDetail("reason", auth.ReasonNotInstalled)
	}
	if err != nil {
		return nil, err
	}
	if err := s.resumeSession(ctx, ss); err != nil {
		return nil, err
	}
	np := *p
	np.UserID = ss.UserID
	np.Scopes = auth.IntersectScopes(p.Scopes, granted)
	return &np, nil
}

// appSessionKey is the hub.Conn value key of an app session's id.
type appSessionKey struct{}

// Upgraded binds an app session's connection (web.UpgradeHook): the
// connect deadline ends, the device is told the session runs, and a
// connection lost while it runs moves it to transport_down. A device's
// connection revives its dormant sessions (recovery.go).
func (s *Service) Upgraded(r *http.Request, c *hub.Conn) {
	if p := c.Principal(); p.AppID == "" && p.DeviceID != "" {
		s.deviceConnected(p.DeviceID)
		return
	}
	id, ok := parseTicket(r.Header.Get(TicketHeader))
	if tok := r.Header.Get(ResumeHeader); tok != "" {
		id, ok = parseToken(resumePrefix, tok)
	}
	if !ok {
		return
	}
	c.SetValue(appSessionKey{}, id)
	defer s.streams.bound(c)
	s.live.mu.Lock()
	ls := s.live.m[id]
	if ls == nil {
		ls = &liveSession{}
		s.live.m[id] = ls
	}
	if ls.deadline != nil {
		ls.deadline.Stop()
		ls.deadline = nil
	}
	old := ls.conn
	ls.conn = c
	s.live.mu.Unlock()
	if old != nil && old != c {
		old.Disconnect(protocol.DisconnectReplaced) // a resume took the session over
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.AfterClose(func(c *hub.Conn) { s.appConnClosed(id, c) })
	ss, err := s.deps.Store.AppSessionByID(ctx, id)
	if err != nil {
		s.log.Error("apps: read a connected app session", "session", id, "err", err)
		return
	}
	if ss.State == protocol.AppStateStopped {
		// Stopped between the ticket's check and now: nothing to run.
		s.ended(ss, false)
		return
	}
	s.streams.attach(ss.ID, ss.DeviceID, c)
	s.log.Info("app session running", "app", ss.AppID, "session", id, "conn", c.ID())
	s.tellDevice(ss)
}

// appConnClosed: the app's connection of a running session ended without
// a stop; the session waits in transport_down for its grace (lostApp).
func (s *Service) appConnClosed(id string, c *hub.Conn) {
	s.streams.detach(id, c)
	s.live.mu.Lock()
	ls := s.live.m[id]
	mine := ls != nil && ls.conn == c
	if mine {
		delete(s.live.m, id)
	}
	s.live.mu.Unlock()
	if !mine {
		return // stopped (ended took it) or replaced
	}
	s.lostApp(id)
}
