package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// The appstreams scenario (issue 13, item 11): a device stream fanned out
// to app sessions, through the whole apps flow over loopback. It registers
// --apps background apps (admin REST, with a webhook URL on a receiver this
// process runs on loopback), installs each for --devices users (REST),
// connects one glasses device per user, and starts every app on every
// device (apps.startSession). Each session.start webhook is verified
// (Standard Webhooks, the app's secret) and answered, and the app's
// session connection is opened with the app's key and the ticket, says
// apps.hello and subscribes to the device's transcript and audio streams
// (streams.set). Then two measured phases, one after the other: the
// devices publish transcript events (streams.publish, --rate per device),
// then audio as binary stream frames (--audio-rate per device, --size
// bytes). Each event and frame carries its send time; every app session
// checks the stream's sequence numbers and counts stream.gap.
//
// Every connection has its own goroutine (a reader) here: unlike the other
// scenarios this one is about the server's per-delivery work, not about
// holding a million sockets.

// AppStreamsResult is the appstreams scenario's part of Result.
type AppStreamsResult struct {
	Devices    int              `json:"devices"`
	Apps       int              `json:"apps"`
	Sessions   int64            `json:"sessions"` // app sessions connected and subscribed
	SetupS     float64          `json:"setup_s"`  // apps, installs, devices, sessions
	Transcript *AppStreamResult `json:"transcript"`
	Audio      *AppStreamResult `json:"audio"`
}

// AppStreamResult is one stream's measured phase.
type AppStreamResult struct {
	Rate      float64 `json:"rate"`      // per device per second, as asked
	Published int64   `json:"published"` // events or frames the devices sent
	// Expected is Published times the subscribed sessions per device.
	Expected      int64         `json:"expected"`
	Delivered     int64         `json:"delivered"`
	PerSec        float64       `json:"per_sec"` // Delivered over the phase (publishing and drain)
	Gaps          int64         `json:"gaps"`    // stream.gap events
	GapCount      int64         `json:"gap_count"`
	SeqJumps      int64         `json:"seq_jumps"` // sequence breaks seen by the apps (announced or not)
	Missing       int64         `json:"missing"`   // Expected - Delivered - GapCount after the drain
	PublishErrors int64         `json:"publish_errors"`
	DurationS     float64       `json:"duration_s"`
	Latency       *LatencyStats `json:"latency,omitempty"`
}

// appStreamIDs are the streams every session subscribes to.
const (
	appStreamTranscript = "transcript"
	appStreamAudio      = "audio"
)

// asConn is one WebSocket connection of the scenario, with a reader
// goroutine: responses go to their waiters, everything else to onFrame or
// onBinary.
type asConn struct {
	nc  net.Conn
	r   io.Reader
	wmu sync.Mutex

	mu      sync.Mutex
	waiters map[string]chan *protocol.Frame
	nextID  int

	onFrame  func(*protocol.Frame)
	onBinary func([]byte)
	closed   chan struct{}
}

func dialAS(ctx context.Context, rawURL string, header http.Header) (*asConn, error) {
	d := gws.Dialer{Header: gws.HandshakeHeaderHTTP(header), Timeout: 10 * time.Second}
	nc, br, _, err := d.Dial(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	c := &asConn{nc: nc, r: nc, waiters: map[string]chan *protocol.Frame{}, closed: make(chan struct{})}
	if br != nil {
		c.r = io.MultiReader(br, nc)
	}
	c.r = bufio.NewReaderSize(c.r, 4096)
	return c, nil
}

func (c *asConn) start() { go c.read() }

func (c *asConn) read() {
	defer close(c.closed)
	for {
		h, err := gws.ReadHeader(c.r)
		if err != nil {
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return
		}
		switch h.OpCode {
		case gws.OpClose:
			_ = c.write(gws.OpClose, payload)
			return
		case gws.OpPing:
			_ = c.write(gws.OpPong, payload)
		case gws.OpBinary:
			if c.onBinary != nil {
				c.onBinary(payload)
			}
		case gws.OpText:
			protocol.Split(payload, func(b []byte) {
				f, err := protocol.Decode(b)
				if err != nil {
					return
				}
				if f.Type == protocol.TypeResponse {
					c.mu.Lock()
					ch := c.waiters[f.ID]
					delete(c.waiters, f.ID)
					c.mu.Unlock()
					if ch != nil {
						ch <- f
					}
					return
				}
				if c.onFrame != nil {
					c.onFrame(f)
				}
			})
		}
	}
}

func (c *asConn) write(op gws.OpCode, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientMessage(c.nc, op, b)
}

// send sends a request and returns the channel its response arrives on.
func (c *asConn) send(method string, params any) (<-chan *protocol.Frame, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	ch := make(chan *protocol.Frame, 1)
	c.mu.Lock()
	c.nextID++
	id := "b" + strconv.Itoa(c.nextID)
	c.waiters[id] = ch
	c.mu.Unlock()
	req, _ := protocol.AppendRequest(nil, id, method, raw, "", nil)
	if err := c.write(gws.OpText, req); err != nil {
		return nil, err
	}
	return ch, nil
}

// call sends a request, waits for its response and decodes the result.
func (c *asConn) call(ctx context.Context, method string, params, out any) error {
	ch, err := c.send(method, params)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case f := <-ch:
		if !f.OK {
			return fmt.Errorf("%s: %v", method, f.Error)
		}
		if out != nil {
			return json.Unmarshal(f.Result, out)
		}
		return nil
	case <-c.closed:
		return fmt.Errorf("%s: connection closed", method)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (c *asConn) close() {
	var b bytes.Buffer
	_ = gws.WriteFrame(&b, gws.MaskFrameInPlace(gws.NewCloseFrame(gws.NewCloseFrameBody(gws.StatusNormalClosure, ""))))
	c.wmu.Lock()
	_, _ = c.nc.Write(b.Bytes())
	c.wmu.Unlock()
	select {
	case <-c.closed:
	case <-time.After(2 * time.Second):
	}
	_ = c.nc.Close()
}

// asPhase is one measured phase's counters.
type asPhase struct {
	hist      histogram
	delivered atomic.Int64
	gaps      atomic.Int64
	gapCount  atomic.Int64
	seqJumps  atomic.Int64
	published atomic.Int64
	pubErrs   atomic.Int64
}

// asApp is a registered app of the run.
type asApp struct {
	id     string
	key    string
	secret webhook.Secret
}

// asRun is the scenario's state.
type asRun struct {
	cfg      *Config
	base     string // http://target
	apps     []asApp
	http     *http.Client
	starts   chan map[string]any // verified session.start bodies
	errs     atomic.Int64
	first    atomic.Pointer[string]
	phase    atomic.Pointer[asPhase]
	appMu    sync.Mutex
	appConn  []*asConn
	sessions atomic.Int64
	failed   atomic.Int64 // sessions the devices saw fail to start
}

func (r *asRun) fail(err error) {
	r.errs.Add(1)
	s := err.Error()
	r.first.CompareAndSwap(nil, &s)
}

// rest does one JSON REST call and wants status.
func (r *asRun) rest(ctx context.Context, token, method, path string, body any, want int, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// hooks is the webhook receiver: /hooks/<app index>.
func (r *asRun) hooks(w http.ResponseWriter, req *http.Request) {
	i, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/hooks/"))
	if err != nil || i < 0 || i >= len(r.apps) {
		http.NotFound(w, req)
		return
	}
	v := &webhook.Verifier{Secrets: []webhook.Secret{r.apps[i].secret}}
	body, _, err := v.VerifyRequest(req, 1<<20)
	if err != nil {
		r.fail(fmt.Errorf("webhook for %s: %w", r.apps[i].id, err))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var hook map[string]any
	if err := json.Unmarshal(body, &hook); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if hook["type"] == "session.start" {
		hook["_app"] = i
		select {
		case r.starts <- hook:
		default:
			r.fail(errors.New("webhook receiver: too many session.start waiting"))
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// connectApp opens an app session connection from a session.start webhook.
func (r *asRun) connectApp(ctx context.Context, hook map[string]any) error {
	app := r.apps[hook["_app"].(int)]
	wsURL, _ := hook["websocketUrl"].(string)
	ticket, _ := hook["ticket"].(string)
	sid, _ := hook["sessionId"].(string)
	u, err := url.Parse(wsURL)
	if err != nil {
		return fmt.Errorf("session.start websocketUrl %q: %w", wsURL, err)
	}
	// Dial the node under test whatever public URL the server announces
	// (the bench only dials loopback).
	u.Scheme, u.Host = "ws", r.cfg.target
	c, err := dialAS(ctx, u.String(), http.Header{"Authorization": {"Bearer " + app.key}, "Junction-Ticket": {ticket}})
	if err != nil {
		return fmt.Errorf("app %s session %s: dial: %w", app.id, sid, err)
	}
	var last sync.Map // stream → last seq (uint64), this connection's reader only
	c.onFrame = func(f *protocol.Frame) { r.onAppEvent(f, &last) }
	var lastFrame uint32
	var haveFrame bool
	c.onBinary = func(b []byte) {
		p := r.phase.Load()
		sf, err := protocol.ParseStreamFrame(b)
		if p == nil || err != nil || len(sf.Payload) < 8 {
			return
		}
		if haveFrame && sf.Seq != lastFrame+1 {
			p.seqJumps.Add(1)
		}
		lastFrame, haveFrame = sf.Seq, true
		p.delivered.Add(1)
		p.hist.record(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(sf.Payload)))
	}
	c.start()
	if err := c.call(ctx, "apps.hello", map[string]string{"appId": app.id, "sessionId": sid}, nil); err != nil {
		c.close()
		return err
	}
	var set protocol.StreamSet
	if err := c.call(ctx, "streams.set", protocol.StreamSetParams{AppID: app.id, SessionID: sid, Seq: 1,
		Streams: []string{appStreamTranscript, appStreamAudio}}, &set); err != nil {
		c.close()
		return err
	}
	if len(set.Granted) != 2 || len(set.Rejected) != 0 {
		c.close()
		return fmt.Errorf("app %s streams.set: granted %v, rejected %v; want both streams", app.id, set.Granted, set.Rejected)
	}
	r.appMu.Lock()
	r.appConn = append(r.appConn, c)
	r.appMu.Unlock()
	r.sessions.Add(1)
	return nil
}

// onAppEvent counts a transcript event or a gap on an app's connection.
func (r *asRun) onAppEvent(f *protocol.Frame, last *sync.Map) {
	p := r.phase.Load()
	if p == nil || f.Type != protocol.TypeEvent {
		return
	}
	switch f.Event {
	case protocol.EventStream:
		var ev protocol.StreamEvent
		var data struct {
			T int64 `json:"t"`
		}
		if json.Unmarshal(f.Data, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil || ev.Snapshot {
			return
		}
		if prev, ok := last.Load(ev.Stream); ok && ev.Seq != prev.(uint64)+1 {
			p.seqJumps.Add(1)
		}
		last.Store(ev.Stream, ev.Seq)
		p.delivered.Add(1)
		p.hist.record(time.Now().UnixNano() - data.T)
	case protocol.EventStreamGap:
		var g protocol.StreamGap
		if json.Unmarshal(f.Data, &g) == nil {
			p.gaps.Add(1)
			p.gapCount.Add(int64(g.Count))
		}
	}
}

// runAppStreams runs the scenario.
func runAppStreams(ctx context.Context, cfg *Config, probe *serverProbe, stderr io.Writer) (*Result, error) {
	mint, err := cfg.tokenMinter()
	if err != nil {
		return nil, err
	}
	setupStart := time.Now()
	run := &asRun{cfg: cfg, base: "http://" + cfg.target,
		http:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
		starts: make(chan map[string]any, cfg.Devices*cfg.Apps+16)}
	defer run.http.CloseIdleConnections()
	prefix := "b" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)

	// The webhook receiver, on the same loopback address as the target.
	host, _, _ := net.SplitHostPort(cfg.target)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("bench: webhook receiver: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(run.hooks), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	admin, err := mint(Claims{User: "bench-apps-admin", Device: "bench-apps-admin", Kind: "machine", Scopes: []string{"admin"}})
	if err != nil {
		return nil, err
	}
	run.apps = make([]asApp, cfg.Apps)
	for i := range run.apps {
		id := fmt.Sprintf("bench-%s.app%d", prefix, i)
		var created protocol.AppCreated
		if err := run.rest(ctx, admin, "POST", "/api/v1/admin/apps", map[string]any{"id": id, "name": id, "kind": "background",
			"scopes": []string{"read", "stream:transcript", "stream:audio"}, "internal": true,
			"webhookUrl": fmt.Sprintf("http://%s/hooks/%d", ln.Addr(), i)}, http.StatusCreated, &created); err != nil {
			return nil, fmt.Errorf("bench: create app: %w", err)
		}
		if created.WebhookSecret == nil {
			return nil, errors.New("bench: the server gave the app no webhook secret (it has no seal key)")
		}
		sec, err := webhook.ParseSecret(created.WebhookSecret.Secret)
		if err != nil {
			return nil, err
		}
		run.apps[i] = asApp{id: id, key: created.Key.Key, secret: sec}
	}
	defer func() {
		// Delete the apps (their sessions stop, their webhooks end).
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, a := range run.apps {
			if a.id != "" {
				_ = run.rest(dctx, admin, "DELETE", "/api/v1/admin/apps/"+a.id, nil, http.StatusNoContent, nil)
			}
		}
	}()

	user := func(d int) string { return fmt.Sprintf("bench-%s-u%d", prefix, d) }
	// Installs: every user installs every app, from the phone.
	if err := parallel(ctx, 16, cfg.Devices, func(d int) error {
		tok, err := mint(Claims{User: user(d), Device: user(d) + "-phone", Kind: "phone", Scopes: []string{scopeRead, scopeWrite}})
		if err != nil {
			return err
		}
		for _, a := range run.apps {
			if err := run.rest(ctx, tok, "PUT", "/api/v1/apps/"+a.id+"/install",
				map[string]any{"scopes": []string{"read", "stream:transcript", "stream:audio"}}, http.StatusOK, nil); err != nil {
				return fmt.Errorf("bench: install: %w", err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// App connectors: connect every session the webhooks announce.
	cctx, stopConnectors := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	for range 32 {
		cwg.Go(func() {
			for {
				select {
				case hook := <-run.starts:
					if err := run.connectApp(cctx, hook); err != nil {
						run.fail(err)
					}
				case <-cctx.Done():
					return
				}
			}
		})
	}
	defer func() {
		stopConnectors()
		cwg.Wait()
		run.appMu.Lock()
		conns := run.appConn
		run.appMu.Unlock()
		_ = parallel(context.Background(), 64, len(conns), func(i int) error { conns[i].close(); return nil })
	}()

	// Devices: connect and start every app.
	devices := make([]*asConn, cfg.Devices)
	defer func() {
		_ = parallel(context.Background(), 64, len(devices), func(i int) error {
			if devices[i] != nil {
				devices[i].close()
			}
			return nil
		})
	}()
	if err := parallel(ctx, 16, cfg.Devices, func(d int) error {
		tok, err := mint(Claims{User: user(d), Device: user(d) + "-glasses", Kind: "glasses", Scopes: []string{scopeRead, scopeWrite}})
		if err != nil {
			return err
		}
		c, err := dialAS(ctx, cfg.u.String(), http.Header{"Authorization": {"Bearer " + tok}})
		if err != nil {
			return fmt.Errorf("bench: device dial: %w", err)
		}
		devices[d] = c
		c.onFrame = func(f *protocol.Frame) {
			// A start that fails reaches the device as app.session
			// stopped with the stage it failed at.
			var s protocol.AppSession
			if f.Type == protocol.TypeEvent && f.Event == protocol.EventAppSession && json.Unmarshal(f.Data, &s) == nil &&
				s.State == protocol.AppStateStopped && s.Stage != "" {
				run.failed.Add(1)
				run.fail(fmt.Errorf("app session %s of %s failed at stage %s: %s", s.ID, s.AppID, s.Stage, s.Error))
			}
		}
		c.start()
		for _, a := range run.apps {
			if err := c.call(ctx, "apps.startSession", protocol.AppSessionStartParams{AppID: a.id}, nil); err != nil {
				return fmt.Errorf("bench: device %d: %w", d, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// Wait for every session, while they keep coming (a 10 s lull ends it).
	want := int64(cfg.Devices * cfg.Apps)
	var lastN int64
	lastChange := time.Now()
	waitUntil(ctx, 10*time.Minute, func() bool {
		n := run.sessions.Load() + run.errs.Load()
		if n != lastN {
			lastN, lastChange = n, time.Now()
		}
		return n >= want || time.Since(lastChange) > 10*time.Second
	})
	if run.sessions.Load() < want {
		return nil, fmt.Errorf("bench: %d of %d app sessions connected and subscribed in %.0fs (%d failed to start, %d errors, first: %s)",
			run.sessions.Load(), want, time.Since(setupStart).Seconds(), run.failed.Load(), run.errs.Load(), deref(run.first.Load()))
	}
	res := &AppStreamsResult{Devices: cfg.Devices, Apps: cfg.Apps, Sessions: run.sessions.Load(), SetupS: time.Since(setupStart).Seconds()}
	fmt.Fprintf(stderr, "appstreams: %d sessions ready in %.1fs\n", res.Sessions, res.SetupS)

	probe.begin(ctx)
	start := time.Now()
	res.Transcript = run.measure(ctx, devices, cfg.Rate, func(c *asConn, seq uint32, p *asPhase) {
		data := fmt.Appendf(nil, `{"t":%d,"text":"the quick brown fox jumps over the lazy dog"}`, time.Now().UnixNano())
		ch, err := c.send("streams.publish", protocol.StreamPublishParams{Stream: appStreamTranscript, Data: data})
		if err != nil {
			p.pubErrs.Add(1)
			return
		}
		p.published.Add(1)
		go func() {
			select {
			case f := <-ch:
				if !f.OK {
					p.pubErrs.Add(1)
				}
			case <-c.closed:
			}
		}()
	})
	payload := make([]byte, cfg.Size)
	res.Audio = run.measure(ctx, devices, cfg.AudioRate, func(c *asConn, seq uint32, p *asPhase) {
		b := make([]byte, 0, protocol.StreamFrameOverhead+len(appStreamAudio)+len(payload))
		b = protocol.AppendStreamFrame(b, appStreamAudio, seq, payload)
		binary.BigEndian.PutUint64(b[protocol.StreamFrameOverhead+len(appStreamAudio):], uint64(time.Now().UnixNano()))
		if err := c.write(gws.OpBinary, b); err != nil {
			p.pubErrs.Add(1)
			return
		}
		p.published.Add(1)
	})
	elapsed := time.Since(start)
	probe.end(ctx)

	out := &Result{Scenario: cfg.Scenario, URL: cfg.u.String(), Conns: cfg.Devices * (cfg.Apps + 1), Procs: 1,
		DurationS: elapsed.Seconds(), Opened: int64(cfg.Devices) + res.Sessions, Errors: run.errs.Load(), AppStreams: res}
	if f := run.first.Load(); f != nil {
		out.FirstError = *f
	}
	return out, nil
}

// measure runs one phase: every device sends at rate per second for the
// duration (send is given the device's frame counter), then the
// deliveries drain (up to 10 s after the last one arrives).
func (r *asRun) measure(ctx context.Context, devices []*asConn, rate float64, send func(*asConn, uint32, *asPhase)) *AppStreamResult {
	p := &asPhase{}
	r.phase.Store(p)
	defer r.phase.Store(nil)
	start := time.Now()
	deadline := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	for i, c := range devices {
		wg.Go(func() {
			// Spread the devices' ticks over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(devices)))
			for seq := uint32(1); ; seq++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				if time.Now().After(deadline) {
					return
				}
				send(c, seq, p)
				next = next.Add(interval)
			}
		})
	}
	wg.Wait()
	expected := p.published.Load() * int64(r.cfg.Apps)
	// Drain: until everything is accounted for, or nothing has arrived for
	// 3 s, or 30 s.
	var lastN int64
	lastChange := time.Now()
	waitUntil(ctx, 30*time.Second, func() bool {
		n := p.delivered.Load() + p.gapCount.Load()
		if n != lastN {
			lastN, lastChange = n, time.Now()
		}
		return n >= expected || time.Since(lastChange) > 3*time.Second
	})
	elapsed := time.Since(start)
	delivered := p.delivered.Load()
	return &AppStreamResult{Rate: rate, Published: p.published.Load(), Expected: expected, Delivered: delivered,
		PerSec: float64(delivered) / elapsed.Seconds(), Gaps: p.gaps.Load(), GapCount: p.gapCount.Load(),
		SeqJumps: p.seqJumps.Load(), Missing: max(0, expected-delivered-p.gapCount.Load()), PublishErrors: p.pubErrs.Load(),
		DurationS: elapsed.Seconds(), Latency: summarize(p.hist.counts())}
}

// parallel runs f(0..n-1) on workers goroutines; the first error stops it.
func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			for first.Load() == nil && ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	return ctx.Err()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// printAppStreams is the human-readable summary of appstreams.
func printAppStreams(w io.Writer, a *AppStreamsResult) {
	fmt.Fprintf(w, "  %d devices × %d apps: %d app sessions (setup %.1fs)\n", a.Devices, a.Apps, a.Sessions, a.SetupS)
	for _, s := range []struct {
		name string
		r    *AppStreamResult
	}{{"transcript (streams.publish → stream.event)", a.Transcript}, {"audio (binary stream frames)", a.Audio}} {
		if s.r == nil {
			continue
		}
		fmt.Fprintf(w, "  %s: %d published (%.0f/s per device), %d of %d delivered, %.0f/s; %d stream.gap (%d dropped), %d sequence breaks, %d missing, %d publish errors\n",
			s.name, s.r.Published, s.r.Rate, s.r.Delivered, s.r.Expected, s.r.PerSec, s.r.Gaps, s.r.GapCount, s.r.SeqJumps, s.r.Missing, s.r.PublishErrors)
		if l := s.r.Latency; l != nil {
			fmt.Fprintf(w, "    latency ms: p50 %.2f, p99 %.2f, p99.9 %.2f, max %.2f\n", l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs)
		}
	}
}

// delivered is the deliveries of both phases.
func (a *AppStreamsResult) delivered() int64 {
	var n int64
	for _, s := range []*AppStreamResult{a.Transcript, a.Audio} {
		if s != nil {
			n += s.Delivered
		}
	}
	return n
}

// checkAppStreams checks the flags of appstreams.
func (c *Config) checkAppStreams() error {
	if c.Rate == 0 {
		c.Rate = 10 // a caption update every 100 ms
	}
	switch {
	case c.Data == "":
		return errors.New("bench: appstreams needs --data: it mints an admin token to register the apps and a token per user")
	case c.Procs != 1:
		return errors.New("bench: appstreams runs in one process: --procs must be 1")
	case c.Devices < 1 || c.Devices > 10_000:
		return fmt.Errorf("bench: --devices %d: want 1 to 10000", c.Devices)
	case c.Apps < 1 || c.Apps > 1000:
		return fmt.Errorf("bench: --apps %d: want 1 to 1000", c.Apps)
	case c.Devices*(c.Apps+1) > connsPerProc:
		return fmt.Errorf("bench: %d devices × %d apps: %d connections exceed one process's open files", c.Devices, c.Apps, c.Devices*(c.Apps+1))
	case c.Rate <= 0 || c.Rate > 1000:
		return fmt.Errorf("bench: --rate %g: appstreams wants 0 < transcript events per second per device <= 1000", c.Rate)
	case c.AudioRate <= 0 || c.AudioRate > 1000:
		return fmt.Errorf("bench: --audio-rate %g: want 0 < frames per second per device <= 1000", c.AudioRate)
	case c.Size < 16:
		return fmt.Errorf("bench: --size %d: appstreams' audio frames carry a send time: want 16 or more", c.Size)
	}
	return nil
}
