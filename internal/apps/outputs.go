package apps

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/arbiter"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// Outputs (docs/apps.md, "Outputs"). A device declares its surfaces
// (output.declare, optionally booting until output.ready); this node then
// runs an executor for it (outexec.go) until its connection closes. An
// app session's connection sends output.request; the gateway stamps the
// session, the app and its priority class (the app's registration), and
// the executor arbitrates. The device gets output.show and output.clear,
// the app output.status events. A session that stops, or loses the output
// scope, has its requests withdrawn; a device that disconnects ends every
// request with reason device_gone.

// Limits of outputs.
const (
	maxSurfaces      = 16
	maxOutputContent = 16 << 10
	maxOutputTTL     = 24 * time.Hour
	maxRequestIDLen  = 64
)

// outputs is the service's registry of device executors on this node.
type outputs struct {
	s       *Service
	clock   outClock
	metrics arbiter.Metrics
	lease   time.Duration // background lease; zero: the arbiter's default
	seq     atomic.Uint64 // request ids made by the gateway
	record  *outcomeLog   // set once: the recent outcomes per device (outlog.go)

	mu   sync.Mutex          // leaf
	devs map[string]*devExec // guarded by mu: device id → its executor
	conn map[*devExec]*hub.Conn
}

func newOutputs(s *Service) *outputs {
	return &outputs{s: s, clock: realClock{now: s.deps.Now}, metrics: arbiter.NewPrometheus(s.deps.Registerer), lease: s.cfg.OutputLease,
		record: newOutcomeLog(outcomesPerDevice, outcomeDevices), devs: map[string]*devExec{}, conn: map[*devExec]*hub.Conn{}}
}

// register adds the output methods to h.
func (o *outputs) register(h *hub.Hub) {
	hub.Handle(h, hub.Method{Name: "output.declare", Scope: hub.ScopeAuthenticated, Mode: hub.Serial}, o.declare)
	hub.Handle(h, hub.Method{Name: "output.ready", Scope: hub.ScopeAuthenticated, Mode: hub.Serial}, o.ready)
	hub.Handle(h, hub.Method{Name: "output.request", Scope: hub.ScopeAuthenticated, Mode: hub.Serial}, o.request)
	hub.Handle(h, hub.Method{Name: "output.cancel", Scope: hub.ScopeAuthenticated, Mode: hub.Serial}, o.cancel)
}

func (o *outputs) exec(device string) *devExec {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.devs[device]
}

func deviceOnly(pr *auth.Principal, method string) error {
	if pr.DeviceID == "" || pr.AppID != "" {
		return protocol.Errorf(protocol.CodeForbidden, "%s is for a device's own connection", method)
	}
	return nil
}

func (o *outputs) declare(ctx context.Context, call *hub.Call, p *protocol.OutputDeclareParams) (protocol.OutputDeclared, error) {
	pr := call.Principal
	if err := deviceOnly(pr, "output.declare"); err != nil {
		return protocol.OutputDeclared{}, err
	}
	if len(p.Surfaces) == 0 || len(p.Surfaces) > maxSurfaces {
		return protocol.OutputDeclared{}, protocol.FieldError("surfaces", "want 1..%d surfaces", maxSurfaces)
	}
	cfg := arbiter.Config{Booting: p.Booting, Metrics: o.metrics, BackgroundLease: o.lease}
	for i, sf := range p.Surfaces {
		if !validWord(sf.Name) {
			return protocol.OutputDeclared{}, protocol.FieldError("surfaces", "surface %d: name: want 1..%d characters of [a-z0-9._:-]", i, maxWordLen)
		}
		if sf.MinIntervalMs < 0 || sf.MinIntervalMs > 60_000 {
			return protocol.OutputDeclared{}, protocol.FieldError("surfaces", "surface %q: minIntervalMs: want 0..60000", sf.Name)
		}
		for _, d := range cfg.Surfaces {
			if d.Name == sf.Name {
				return protocol.OutputDeclared{}, protocol.FieldError("surfaces", "surface %q is declared twice", sf.Name)
			}
		}
		cfg.Surfaces = append(cfg.Surfaces, arbiter.Surface{Name: sf.Name, MinInterval: time.Duration(sf.MinIntervalMs) * time.Millisecond})
	}
	c, device := call.Conn, pr.DeviceID
	x, err := newDevExec(device, cfg, o.clock, func(cmd arbiter.Command, appID string) { o.toDevice(c, cmd, appID) }, o.toApp)
	if err != nil {
		return protocol.OutputDeclared{}, protocol.FieldError("surfaces", "%v", err)
	}
	x.outcomes = o.record
	o.mu.Lock()
	old := o.devs[device]
	oldConn := o.conn[old]
	o.devs[device] = x
	o.conn[x] = c
	delete(o.conn, old)
	o.mu.Unlock()
	if old != nil {
		reason := ""
		if oldConn != c {
			reason = ReasonDeviceGone
		}
		old.stop(reason)
	}
	o.s.deps.Hub.Go(x.run)
	if old == nil || oldConn != c {
		c.AfterClose(func(c *hub.Conn) { o.deviceClosed(device, c) })
	}
	return protocol.OutputDeclared{Surfaces: p.Surfaces, Booting: p.Booting}, nil
}

// deviceClosed ends the device's executor if c declared it.
func (o *outputs) deviceClosed(device string, c *hub.Conn) {
	o.mu.Lock()
	x := o.devs[device]
	if x == nil || o.conn[x] != c {
		o.mu.Unlock()
		return
	}
	delete(o.devs, device)
	delete(o.conn, x)
	o.mu.Unlock()
	x.stop(ReasonDeviceGone)
}

func (o *outputs) ready(ctx context.Context, call *hub.Call, _ *protocol.OutputReadyParams) (protocol.OutputReady, error) {
	if err := deviceOnly(call.Principal, "output.ready"); err != nil {
		return protocol.OutputReady{}, err
	}
	x := o.exec(call.Principal.DeviceID)
	if x == nil {
		return protocol.OutputReady{}, protocol.Errorf(protocol.CodeConflict, "declare the device's surfaces first (output.declare)").WithDetail("reason", "not_declared")
	}
	var was bool
	err := x.do(ctx, func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		was = a.Booting()
		return a.BootDone(now)
	})
	return protocol.OutputReady{WasBooting: was}, err
}

// toDevice sends one command to the device's connection.
func (o *outputs) toDevice(c *hub.Conn, cmd arbiter.Command, appID string) {
	var data []byte
	event := protocol.EventOutputClear
	if cmd.Op == arbiter.Show {
		event = protocol.EventOutputShow
		data, _ = json.Marshal(protocol.OutputShow{Surface: cmd.Surface, AppID: appID, SessionID: cmd.Request.App,
			RequestID: statusOf(arbiter.Event{Request: cmd.Request.ID, App: cmd.Request.App}, "").RequestID, Content: cmd.Request.Content})
	} else {
		data, _ = json.Marshal(protocol.OutputClear{Surface: cmd.Surface})
	}
	c.SendEvent(event, "", "", 0, data)
}

// toApp sends one event to the session's connection on this node, if it
// has one (an app whose connection is down misses it: see docs/apps.md).
func (o *outputs) toApp(session string, st protocol.OutputStatus) {
	o.s.live.mu.Lock()
	var c *hub.Conn
	if ls := o.s.live.m[session]; ls != nil {
		c = ls.conn
	}
	o.s.live.mu.Unlock()
	if c == nil {
		return
	}
	data, _ := json.Marshal(st)
	c.SendEvent(protocol.EventOutputStatus, "", "", 0, data)
}

// appSession returns the id of the app session c is the connection of,
// the session's device, its app's priority class; the session must be
// running.
func (o *outputs) appSession(ctx context.Context, call *hub.Call, method string) (sid, device string, class arbiter.Class, priority string, err error) {
	pr := call.Principal
	sid, _ = call.Conn.Value(appSessionKey{}).(string)
	if pr.AppID == "" || sid == "" {
		return "", "", 0, "", protocol.Errorf(protocol.CodeForbidden, "%s is for an app session's connection", method)
	}
	if !pr.HasScope(protocol.ScopeOutput) {
		return "", "", 0, "", protocol.Errorf(protocol.CodeForbidden, "%s needs scope %q", method, protocol.ScopeOutput).WithDetail("scope", protocol.ScopeOutput)
	}
	ss, err := o.s.deps.Store.AppSessionByID(ctx, sid)
	if err != nil {
		return "", "", 0, "", err
	}
	if ss.State != protocol.AppStateRunning {
		return "", "", 0, "", protocol.Errorf(protocol.CodeConflict, "the app session is %s", ss.State).WithDetail("reason", "session_"+ss.State)
	}
	app, err := o.s.deps.Store.App(ctx, ss.AppID)
	if err != nil {
		return "", "", 0, "", err
	}
	class, err = arbiter.ParseClass(app.Priority)
	if err != nil {
		return "", "", 0, "", err
	}
	return sid, ss.DeviceID, class, app.Priority, nil
}

// validRequestID reports whether id is 1..64 characters of [A-Za-z0-9._:-].
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func checkOutputRequest(p *protocol.OutputRequestParams) error {
	if p.ID != "" && !validRequestID(p.ID) {
		return protocol.FieldError("id", "want 1..%d characters of [A-Za-z0-9._:-]", maxRequestIDLen)
	}
	if p.Surface == "" || len(p.Surface) > maxWordLen {
		return protocol.FieldError("surface", "want 1..%d bytes", maxWordLen)
	}
	if len(p.Content) == 0 || string(p.Content) == "null" {
		return protocol.FieldError("content", "required")
	}
	if len(p.Content) > maxOutputContent {
		return protocol.FieldError("content", "over %d bytes", maxOutputContent)
	}
	if p.TTLMs < 0 || time.Duration(p.TTLMs)*time.Millisecond > maxOutputTTL {
		return protocol.FieldError("ttlMs", "want 0..%d", maxOutputTTL.Milliseconds())
	}
	if p.Restore != "" && p.Restore != "none" && p.Restore != "on_resume" {
		return protocol.FieldError("restore", "want none or on_resume")
	}
	return nil
}

func (o *outputs) request(ctx context.Context, call *hub.Call, p *protocol.OutputRequestParams) (protocol.OutputAccepted, error) {
	if err := checkOutputRequest(p); err != nil {
		return protocol.OutputAccepted{}, err
	}
	sid, device, class, priority, err := o.appSession(ctx, call, "output.request")
	if err != nil {
		return protocol.OutputAccepted{}, err
	}
	if p.Force && !call.Principal.HasScope(protocol.ScopeOutputForce) {
		return protocol.OutputAccepted{}, protocol.Errorf(protocol.CodeForbidden, "force needs scope %q", protocol.ScopeOutputForce).
			WithDetail("scope", protocol.ScopeOutputForce)
	}
	x := o.exec(device)
	if x == nil {
		return protocol.OutputAccepted{}, protocol.Errorf(protocol.CodeUnavailable, "the device has no declared surfaces on this gateway (offline, or output.declare not sent yet)").
			WithDetail("reason", "device_unavailable")
	}
	id := p.ID
	if id == "" {
		id = "g" + strconv.FormatUint(o.seq.Add(1), 10)
	}
	appID := call.Principal.AppID
	req := arbiter.Request{ID: sid + "/" + id, App: sid, Class: class, Surface: p.Surface, Content: p.Content,
		TTL: time.Duration(p.TTLMs) * time.Millisecond, Restore: p.Restore == "on_resume", Force: p.Force}
	err = x.do(ctx, func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		x.apps[sid] = appID
		x.noteRequest(req, appID, priority, now)
		return a.Request(now, req)
	})
	if err != nil {
		return protocol.OutputAccepted{}, err
	}
	return protocol.OutputAccepted{RequestID: id, Priority: priority}, nil
}

func (o *outputs) cancel(ctx context.Context, call *hub.Call, p *protocol.OutputCancelParams) (protocol.OutputCancelled, error) {
	if (p.RequestID == "") == (p.Surface == "") {
		return protocol.OutputCancelled{}, protocol.FieldError("requestId", "give requestId or surface, not both")
	}
	sid, device, _, _, err := o.appSession(ctx, call, "output.cancel")
	if err != nil {
		return protocol.OutputCancelled{}, err
	}
	x := o.exec(device)
	if x == nil {
		return protocol.OutputCancelled{}, nil // the device's requests ended with it
	}
	var found bool
	err = x.do(ctx, func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		var out arbiter.Output
		if p.RequestID != "" {
			out = a.Cancel(now, sid, sid+"/"+p.RequestID)
		} else {
			out = a.Clear(now, sid, p.Surface)
		}
		for _, ev := range out.Events {
			found = found || ev.App == sid && ev.Final()
		}
		return out
	})
	return protocol.OutputCancelled{Found: found}, err
}

// sessionEnded withdraws every request of a session (stopped, or no longer
// holding the output scope). It waits (a few seconds at most) until the
// app was told, so that a stopping session hears the end of its outputs
// before app.stopped.
func (o *outputs) sessionEnded(sid, device string) {
	x := o.exec(device)
	if x == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = x.do(ctx, func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		if _, ok := x.apps[sid]; !ok {
			return arbiter.Output{}
		}
		delete(x.apps, sid)
		return a.AppEnded(now, sid)
	})
}

// narrowed follows a change of c's principal: a session connection that
// lost the output scope has its requests withdrawn.
func (o *outputs) narrowed(ctx context.Context, c *hub.Conn, p *auth.Principal) {
	sid, _ := c.Value(appSessionKey{}).(string)
	if sid == "" || p.HasScope(protocol.ScopeOutput) {
		return
	}
	ss, err := o.s.deps.Store.AppSessionByID(ctx, sid)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			o.s.log.Warn("apps: find the device of a narrowed session", "session", sid, "err", err)
		}
		return
	}
	o.sessionEnded(sid, ss.DeviceID)
}
