package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// benchRun is one process's share of a run: its connections live on a
// RoleClient ws.Transport, so an idle connection costs no goroutine.
type benchRun struct {
	cfg *Config      // set once
	d   *benchDialer // set once
	m   *meter       // set once
	tr  *ws.Transport

	hist     histogram // fan-out delivery, ping, call or connect latency
	pingHist histogram // mixed: sys.ping round trips
	callHist histogram // mixed: relayed rpc.call round trips
	ackHist  histogram // fanout, mixed: publish → acknowledgement (the publisher's own round trip)
	// pubSent holds the send time (unix ns) of WebSocket publication seq at
	// seq % len: at most 65,536 are unacknowledged (publish).
	pubSent     [1 << 16]atomic.Int64
	errs        atomic.Int64
	firstErr    atomic.Pointer[string]
	dialErrs    atomic.Int64
	closedEarly atomic.Int64
	ready       atomic.Int64 // connections done with setup (welcomed, subscribed)
	setupFailed atomic.Int64 // connections whose setup request failed
	stopping    atomic.Bool  // teardown began: closes are expected
	sendStop    atomic.Bool  // the measured phase is over: send nothing new
	deadline    atomic.Int64 // unix nanoseconds when the measured phase ends
	pings       atomic.Int64 // sys.ping answered within the measured phase
	calls       atomic.Int64 // relayed calls answered ok within the measured phase
}

// eventUnsubscribed: the server dropped a subscription (a gap it could not
// fill, a reset). When it advises resubscribing, the load generator does,
// from its last offset, as a client of the SDKs does (resubscribe).
var eventUnsubscribed = []byte(`{"type":"event","event":"channel.unsubscribed"`)

// Kinds of connection.
const (
	kindIdle = iota
	kindPinger
	kindSubscriber
	kindPublisher
	kindMachine // relay: serves relayMethod
	kindCaller  // relay: calls a machine
)

// benchConn is the state of one connection, stored as its ws.Conn value.
type benchConn struct {
	run   *benchRun  // set once
	kind  int        // set once
	index int        // set once: the connection's index in open
	c     *ws.Conn   // set once after attach
	hist  *histogram // set once: where this connection's round trips go
	req   []byte     // set once: caller only, its rpc.call after the id (relayCallPrefix)
	seq   atomic.Uint64

	last  uint64        // owned by the loop: last channel offset received
	epoch string        // owned by the loop: the subscription's epoch
	start atomic.Uint64 // channel offset at subscription
	recv  atomic.Int64  // channel messages received
	gaps  atomic.Int64  // offsets skipped
	dups  atomic.Int64  // offsets received again or out of order
	// unsubscribed counts channel.unsubscribed events: the server dropped
	// the subscription; with resubscribe advised, a resubscription from
	// the last offset follows, and unrecovered counts those the server
	// could not resume (what they skipped is lost).
	unsubscribed atomic.Int64
	unrecovered  atomic.Int64

	// Publisher only.
	outstanding atomic.Int64  // publications not yet acknowledged
	acked       atomic.Int64  // publications acknowledged
	ackedInTime atomic.Int64  // of which acknowledged before the deadline (publications/s)
	maxOffset   atomic.Uint64 // highest offset acknowledged
}

func (r *benchRun) fail(msg string) {
	r.errs.Add(1)
	r.firstErr.CompareAndSwap(nil, &msg)
}

// OnMessage implements ws.Handler. A message holds one frame or several
// separated by '\n'.
func (r *benchRun) OnMessage(c *ws.Conn, payload []byte) {
	bc, _ := c.Value().(*benchConn)
	if bc == nil {
		return
	}
	for len(payload) > 0 {
		f := payload
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			f, payload = payload[:i], payload[i+1:]
		} else {
			payload = nil
		}
		if len(f) > 0 {
			bc.onFrame(c, f)
		}
	}
}

// OnClose implements ws.Handler.
func (r *benchRun) OnClose(c *ws.Conn, code int, reason string) {
	r.m.conns.Add(-1)
	if !r.stopping.Load() {
		r.closedEarly.Add(1)
		r.fail(fmt.Sprintf("connection closed by the server: %d %s", code, reason))
	}
}

func (bc *benchConn) onFrame(c *ws.Conn, f []byte) {
	r := bc.run
	if bc.kind == kindMachine || bc.kind == kindCaller {
		bc.onRelayFrame(c, f)
		return
	}
	if bytes.HasPrefix(f, eventMessage) {
		now := time.Now().UnixNano()
		off, ts, ok, hasTS := messageFields(f[len(eventMessage):])
		if !ok {
			r.fail("channel.message without an offset")
			return
		}
		if hasTS {
			r.hist.record(now - int64(ts))
		}
		bc.count(off)
		return
	}
	if id, ok, isRes := responseID(f); isRes {
		bc.onResponse(c, f, id, ok)
		return
	}
	if bytes.HasPrefix(f, eventWelcome) {
		switch bc.kind {
		case kindSubscriber:
			if err := c.SendText(subscribeRequest(r.cfg.Topic)); err != nil {
				r.fail("send subscribe: " + err.Error())
			}
		default:
			r.ready.Add(1)
		}
		return
	}
	if bytes.HasPrefix(f, eventUnsubscribed) {
		bc.unsubscribed.Add(1)
		if bc.kind == kindSubscriber && bytes.Contains(f, markResubscribe) && !r.stopping.Load() {
			if err := c.SendText(resubscribeRequest(r.cfg.Topic, bc.epoch, bc.last)); err != nil {
				r.fail("send resubscribe: " + err.Error())
			}
		}
		return
	}
	if bytes.HasPrefix(f, []byte(`{"type":"event","event":"error"`)) {
		r.fail(string(f[:min(len(f), 300)]))
	}
}

// count takes the channel publication at offset off.
func (bc *benchConn) count(off uint64) {
	switch {
	case off <= bc.last:
		bc.dups.Add(1)
	case off > bc.last+1:
		bc.gaps.Add(int64(off - bc.last - 1))
		fallthrough
	default:
		bc.last = off
		bc.recv.Add(1)
		bc.run.m.deliveries.Add(1)
	}
}

func (bc *benchConn) onResponse(c *ws.Conn, f, id []byte, ok bool) {
	r := bc.run
	if !ok {
		r.fail(string(f[:min(len(f), 300)]))
	}
	switch bc.kind {
	case kindSubscriber:
		if string(id) == subscribeID {
			if !ok {
				r.setupFailed.Add(1)
				return
			}
			off, _ := scanUint(f, markOffset)
			bc.start.Store(off)
			bc.last = off
			bc.epoch = scanString(f, markEpoch)
			r.ready.Add(1)
		} else if string(id) == resubscribeID {
			bc.resubscribed(f, ok)
		}
	case kindPinger:
		now := time.Now().UnixNano()
		if sent, valid := leadingUint(id); valid {
			bc.hist.record(now - int64(sent))
		}
		if now < r.deadline.Load() {
			if ok {
				r.pings.Add(1)
				r.m.ops.Add(1)
			}
		}
		bc.outstanding.Add(-1)
		if !r.sendStop.Load() {
			bc.ping(c)
		}
	case kindPublisher:
		now := time.Now().UnixNano()
		if seq, valid := leadingUint(id[min(1, len(id)):]); valid && len(id) > 0 && id[0] == 'p' {
			if sent := r.pubSent[seq%uint64(len(r.pubSent))].Load(); sent > 0 {
				r.ackHist.record(now - sent)
			}
		}
		if ok {
			if now < r.deadline.Load() {
				bc.ackedInTime.Add(1)
			}
			off, _ := scanUint(f, markOffset)
			for {
				cur := bc.maxOffset.Load()
				if off <= cur || bc.maxOffset.CompareAndSwap(cur, off) {
					break
				}
			}
			bc.acked.Add(1)
			r.m.ops.Add(1)
		}
		bc.outstanding.Add(-1)
	}
}

// ping sends one sys.ping whose id is its send time.
func (bc *benchConn) ping(c *ws.Conn) {
	var buf [96]byte
	b := append(buf[:0], `{"type":"req","id":"`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `","method":"sys.ping"}`...)
	bc.outstanding.Add(1)
	if err := c.SendText(b); err != nil {
		bc.outstanding.Add(-1)
		bc.run.fail("send ping: " + err.Error())
	}
}

// runScenario runs cfg.Scenario in this process.
func runScenario(ctx context.Context, cfg *Config, m *meter, hooks phaseHooks) (*Result, error) {
	prefix := ""
	if cfg.Child >= 0 {
		prefix = "p" + strconv.Itoa(cfg.Child) + "-"
	}
	tokens := fixedToken(cfg.Token)
	if cfg.Scenario == "mixed" {
		var err error
		if tokens, err = cfg.mixedTokens(prefix); err != nil {
			return nil, err
		}
	} else if cfg.Scenario == "relay" {
		var err error
		if tokens, err = cfg.relayTokens(prefix); err != nil {
			return nil, err
		}
		if tokens, err = premint(tokens, cfg.Machines+cfg.Conns); err != nil {
			return nil, err
		}
	} else if cfg.Data != "" {
		var err error
		if tokens, err = cfg.mintingTokens(prefix); err != nil {
			return nil, err
		}
		if cfg.Scenario == "connect" {
			// Mint the workers' tokens now rather than during the measurement.
			if tokens, err = premint(tokens, cfg.Conns); err != nil {
				return nil, err
			}
		}
	}
	r := &benchRun{cfg: cfg, m: m, d: &benchDialer{nodes: cfg.nodes, nodeOf: cfg.nodeOf(), sources: cfg.Sources, tokens: tokens}}
	if cfg.Child > 0 && len(cfg.Sources) > 1 {
		r.d.next.Store(uint64(cfg.Child)) // children start on different sources
	}
	res := &Result{Scenario: cfg.Scenario, URL: cfg.u.String(), Conns: cfg.Conns, Procs: 1, Sources: len(cfg.Sources), Nodes: cfg.nodeCount()}
	var err error
	if cfg.Scenario == "connect" {
		err = r.connect(ctx, hooks, res)
	} else {
		r.tr = ws.New(ws.Config{MaxMessageBytes: 1 << 20, MaxQueueFrames: 1 << 16, MaxQueueBytes: 64 << 20, WriteTimeout: 3 * time.Second,
			ReadPause: cfg.ReadPause})
		if err := r.tr.Start(); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer func() {
			r.stopping.Store(true)
			_ = r.tr.Close()
		}()
		switch cfg.Scenario {
		case "idle":
			err = r.idle(ctx, hooks, res)
		case "rpc":
			err = r.rpc(ctx, hooks, res)
		case "fanout", "mixed":
			err = r.fanout(ctx, hooks, res)
		case "relay":
			err = r.relay(ctx, hooks, res)
		}
	}
	if err != nil {
		return nil, err
	}
	res.DialErrors = r.dialErrs.Load()
	res.ClosedEarly = r.closedEarly.Load()
	res.Errors = r.errs.Load()
	if p := r.firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	res.Hist = r.hist.counts()
	return res, nil
}

// open dials n connections of the given kinds with cfg.Dialers workers and
// waits until each has finished its setup (welcome, subscription), at most
// 60 s. It returns the connections that opened.
func (r *benchRun) open(ctx context.Context, n int, kind func(i int) int) ([]*benchConn, error) {
	conns := make([]*benchConn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, r.cfg.Dialers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				nc, buffered, err := r.d.dial(ctx, i)
				if err != nil {
					r.dialErrs.Add(1)
					r.fail(err.Error())
					continue
				}
				bc := &benchConn{run: r, kind: kind(i), index: i}
				bc.hist = r.histFor(bc.kind)
				c, err := r.tr.AttachWith(nc, ws.RoleClient, r, ws.AttachOptions{Value: bc, Buffered: buffered})
				if err != nil {
					nc.Close()
					r.dialErrs.Add(1)
					r.fail(err.Error())
					continue
				}
				bc.c = c
				r.m.conns.Add(1)
				conns[i] = bc
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: opening connections: %w", err)
	}
	opened := conns[:0]
	for _, bc := range conns {
		if bc != nil {
			opened = append(opened, bc)
		}
	}
	if len(opened) == 0 {
		msg := "no connection opened"
		if p := r.firstErr.Load(); p != nil {
			msg += ": " + *p
		}
		return nil, fmt.Errorf("bench: %s", msg)
	}
	deadline := time.Now().Add(60 * time.Second)
	for r.ready.Load()+r.closedEarly.Load() < int64(len(opened)) {
		if r.setupFailed.Load() > 0 {
			return nil, fmt.Errorf("bench: %d connections failed their setup: %s", r.setupFailed.Load(), *r.firstErr.Load())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("bench: only %d of %d connections finished their setup", r.ready.Load(), len(opened))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return opened, nil
}

// teardown closes every connection with 1000.
func (r *benchRun) teardown(conns []*benchConn) {
	r.stopping.Store(true)
	for _, bc := range conns {
		bc.c.Close(protocol.CloseNormal, "")
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// connect measures authenticated connects: cfg.Conns workers each dial,
// upgrade, wait for the welcome and close, over and over. Connection
// latency (dial to welcome) goes to the histogram.
func (r *benchRun) connect(ctx context.Context, hooks phaseHooks, res *Result) error {
	// One token per worker: each worker's connections are sequential, so
	// none replaces another of the same device.
	if err := hooks.ready(); err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(r.cfg.Duration)
	var connects atomic.Int64
	var wg sync.WaitGroup
	for w := range r.cfg.Conns {
		wg.Go(func() {
			raw, err := r.newRawConnector(w)
			if err != nil {
				r.fail(err.Error())
				return
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if raw != nil {
					err = r.connectRaw(raw)
				} else {
					err = r.connectOnce(ctx, w)
				}
				if err != nil {
					r.dialErrs.Add(1)
					r.fail(err.Error())
					sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				connects.Add(1)
				r.m.ops.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	hooks.done()
	n := connects.Load()
	res.DurationS = elapsed.Seconds()
	res.Opened = n
	res.Connect = &ConnectResult{Connects: n, PerSec: float64(n) / elapsed.Seconds(), Subscribe: r.cfg.Subscribe}
	return nil
}

// subscribeID is the id of the subscribers' (and subscribing connects')
// channel.subscribe.
const subscribeID = "sub"

// subscribeRequest is the channel.subscribe of topic with id subscribeID.
func subscribeRequest(topic string) []byte {
	req, _ := protocol.AppendRequest(nil, subscribeID, "channel.subscribe",
		append(append([]byte(`{"topic":`), protocol.AppendString(nil, topic)...), '}'), "", nil)
	return req
}

// resubscribeID is the id of a subscriber's resubscription.
const resubscribeID = "resub"

// markResubscribe is in a channel.unsubscribed that advises resubscribing.
var markResubscribe = []byte(`"resubscribe":true`)

// resubscribeRequest is the channel.subscribe of topic from position
// (epoch, offset), with id resubscribeID.
func resubscribeRequest(topic, epoch string, offset uint64) []byte {
	params, _ := json.Marshal(protocol.SubscribeParams{Topic: topic, Since: &protocol.StreamPosition{Epoch: epoch, Offset: offset}})
	req, _ := protocol.AppendRequest(nil, resubscribeID, "channel.subscribe", params, "", nil)
	return req
}

// resubscribed takes the answer to a resubscription: the publications it
// recovered count as received (they are the ones the dropped subscription
// missed); one the server could not resume starts over at its position.
func (bc *benchConn) resubscribed(f []byte, ok bool) {
	r := bc.run
	if !ok {
		r.fail("resubscribe: " + string(f[:min(len(f), 300)]))
		return
	}
	var res struct {
		Result protocol.SubscribeResult `json:"result"`
	}
	if err := json.Unmarshal(f, &res); err != nil {
		r.fail("resubscribe: " + err.Error())
		return
	}
	if !res.Result.Recovered {
		bc.unrecovered.Add(1)
		bc.epoch, bc.last = res.Result.Epoch, res.Result.Offset
		return
	}
	now := time.Now().UnixNano()
	for _, p := range res.Result.Publications {
		if ts, ok := scanUint(p.Data, markTimestamp); ok {
			r.hist.record(now - int64(ts))
		}
		bc.count(p.Offset)
	}
}

// subscribeFrame is subscribeRequest as a masked client text frame.
func subscribeFrame(topic string) []byte {
	var b bytes.Buffer
	_ = gws.WriteFrame(&b, gws.MaskFrameInPlace(gws.NewTextFrame(subscribeRequest(topic))))
	return b.Bytes()
}

var clientCloseFrame = func() []byte {
	var b bytes.Buffer
	_ = gws.WriteFrame(&b, gws.MaskFrameInPlace(gws.NewCloseFrame(gws.NewCloseFrameBody(gws.StatusNormalClosure, ""))))
	return b.Bytes()
}()

func (r *benchRun) connectOnce(ctx context.Context, worker int) error {
	t0 := time.Now()
	nc, buffered, err := r.d.dial(ctx, worker)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	rd := newBufferedReader(buffered, nc)
	msg, err := readServerText(rd)
	if err != nil {
		return fmt.Errorf("read welcome: %w", err)
	}
	if !bytes.HasPrefix(msg, eventWelcome) {
		return fmt.Errorf("first frame is not the welcome: %.200s", msg)
	}
	if r.cfg.Subscribe {
		if _, err := nc.Write(subscribeFrame(r.cfg.Topic)); err != nil {
			return fmt.Errorf("send subscribe: %w", err)
		}
		for {
			msg, err := readServerText(rd)
			if err != nil {
				return fmt.Errorf("read subscription: %w", err)
			}
			if id, ok, isRes := responseID(msg); isRes && string(id) == subscribeID {
				if !ok {
					return fmt.Errorf("subscribe: %.200s", msg)
				}
				break
			}
		}
	}
	r.hist.record(int64(time.Since(t0)))
	r.m.conns.Add(1)
	defer r.m.conns.Add(-1)
	// Close handshake: the server echoes the close and ends the TCP
	// connection first, so TIME_WAIT stays on its side, not on our ports.
	if _, err := nc.Write(clientCloseFrame); err != nil {
		return fmt.Errorf("send close: %w", err)
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, rd)
	return nil
}

// idle opens cfg.Conns connections and holds them for the duration.
func (r *benchRun) idle(ctx context.Context, hooks phaseHooks, res *Result) error {
	kind := kindIdle
	if r.cfg.Subscribe {
		kind = kindSubscriber
	}
	conns, err := r.open(ctx, r.cfg.Conns, func(int) int { return kind })
	if err != nil {
		return err
	}
	defer r.teardown(conns)
	// Let the server's per-handshake garbage settle before measuring it.
	settle := min(time.Second, r.cfg.Duration/2)
	sleepCtx(ctx, settle)
	if err := hooks.ready(); err != nil {
		return err
	}
	start := time.Now()
	sleepCtx(ctx, r.cfg.Duration-settle)
	hooks.done()
	res.DurationS = time.Since(start).Seconds() + settle.Seconds()
	res.Opened = int64(len(conns))
	return nil
}

// rpc keeps cfg.Window sys.ping requests outstanding on each of cfg.Conns
// connections for the duration.
func (r *benchRun) rpc(ctx context.Context, hooks phaseHooks, res *Result) error {
	conns, err := r.open(ctx, r.cfg.Conns, func(int) int { return kindPinger })
	if err != nil {
		return err
	}
	defer r.teardown(conns)
	if err := hooks.ready(); err != nil {
		return err
	}
	elapsed := r.windowed(ctx, conns, func(bc *benchConn) { bc.ping(bc.c) }, 5*time.Second)
	hooks.done()
	res.DurationS = elapsed.Seconds()
	res.Opened = int64(len(conns))
	n := r.pings.Load()
	res.RPC = &RPCResult{Window: r.cfg.Window, Pings: n, PerSec: float64(n) / elapsed.Seconds()}
	return nil
}

// waitUntil polls cond every 5 ms until it holds, d passes or ctx ends.
// windowed runs a closed-loop phase: send starts cfg.Window requests on each
// connection (each answer sends the next until the deadline), the phase
// lasts cfg.Duration, then sending stops and the requests still outstanding
// are awaited for up to drain. It returns the phase's length.
func (r *benchRun) windowed(ctx context.Context, conns []*benchConn, send func(*benchConn), drain time.Duration) time.Duration {
	start := time.Now()
	r.deadline.Store(start.Add(r.cfg.Duration).UnixNano())
	for range r.cfg.Window {
		for _, bc := range conns {
			send(bc)
		}
	}
	sleepCtx(ctx, r.cfg.Duration)
	elapsed := time.Since(start)
	r.sendStop.Store(true)
	waitUntil(ctx, drain, func() bool {
		var n int64
		for _, bc := range conns {
			n += bc.outstanding.Load()
		}
		return n == 0
	})
	return elapsed
}

func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// awaitDeliveries waits for the fan-out's last deliveries: up to lateAfter
// for arrived, then calls endPhase (the measured phase ends when they all
// arrived, at the latest then), then, if they have not all arrived, waits
// on until drain has passed in all. What arrives after endPhase is late;
// what has not arrived when it returns is lost.
func awaitDeliveries(ctx context.Context, lateAfter, drain time.Duration, arrived func() bool, endPhase func()) {
	if waitUntil(ctx, lateAfter, arrived) {
		endPhase()
		return
	}
	endPhase()
	waitUntil(ctx, drain-lateAfter, arrived)
}

// histFor returns the histogram of a connection kind: in the mixed
// scenario pings and calls have their own, beside the fan-out's.
func (r *benchRun) histFor(kind int) *histogram {
	if r.cfg.Scenario == "mixed" {
		switch kind {
		case kindPinger:
			return &r.pingHist
		case kindCaller:
			return &r.callHist
		}
	}
	return &r.hist
}

// mixedLayout is the order of the mixed scenario's connections (and
// fanout's, which has no side connections): subscribers, the WebSocket
// publisher if any, pingers, machines, callers.
type mixedLayout struct{ subs, wsPub, pingers, machines, callers int }

func (c *Config) layout() mixedLayout {
	l := mixedLayout{subs: c.Conns}
	if c.Child <= 0 && c.PublishVia == "ws" {
		l.wsPub = 1
	}
	if c.Scenario == "mixed" {
		l.pingers, l.machines, l.callers = c.Pingers, c.Machines, c.Callers
	}
	return l
}

func (l mixedLayout) relayBase() int { return l.subs + l.wsPub + l.pingers }
func (l mixedLayout) total() int     { return l.relayBase() + l.machines + l.callers }

func (l mixedLayout) kind(i int) int {
	switch {
	case i < l.subs:
		return kindSubscriber
	case i < l.subs+l.wsPub:
		return kindPublisher
	case i < l.relayBase():
		return kindPinger
	case i < l.relayBase()+l.machines:
		return kindMachine
	}
	return kindCaller
}

// mixedTokens mints the mixed scenario's credentials: a distinct user per
// subscriber, publisher and pinger; the machines and callers as in relay
// (one user), after them. REST publishers take indices past the end.
func (c *Config) mixedTokens(prefix string) (tokenSource, error) {
	base, err := c.mintingTokens(prefix)
	if err != nil {
		return nil, err
	}
	relay, err := c.relayTokens(prefix)
	if err != nil {
		return nil, err
	}
	l := c.layout()
	return func(i int) (string, error) {
		if j := i - l.relayBase(); j >= 0 && j < l.machines+l.callers {
			return relay(j)
		}
		return base(i)
	}, nil
}

// fanout subscribes cfg.Conns connections to cfg.Topic and publishes (in
// child 0 only, under --procs) from one more connection or from
// cfg.Publishers HTTP clients, each publication carrying its send time. The
// mixed scenario adds pingers and relayed callers, one request outstanding
// each, for the duration of the publishing.
func (r *benchRun) fanout(ctx context.Context, hooks phaseHooks, res *Result) error {
	l := r.cfg.layout()
	hasPub := r.cfg.Child <= 0
	conns, err := r.open(ctx, l.total(), l.kind)
	if err != nil {
		return err
	}
	defer r.teardown(conns)
	var pub *benchConn
	var subs, pingers, machines, callers []*benchConn
	for _, bc := range conns {
		switch bc.kind {
		case kindPublisher:
			pub = bc
		case kindSubscriber:
			subs = append(subs, bc)
		case kindPinger:
			pingers = append(pingers, bc)
		case kindMachine:
			machines = append(machines, bc)
		case kindCaller:
			callers = append(callers, bc)
		}
	}
	if len(machines) != l.machines {
		return fmt.Errorf("bench: %d of %d machine connections opened", len(machines), l.machines)
	}
	for _, bc := range callers {
		bc.req = relayCallPrefix(relayMachineDevice(r.prefix(), (bc.index-l.relayBase()-l.machines)%max(l.machines, 1)))
	}
	if hasPub && r.cfg.PublishVia == "rest" {
		pub = &benchConn{run: r, kind: kindPublisher, index: l.total()}
	}
	if hasPub && pub == nil {
		msg := ""
		if p := r.firstErr.Load(); p != nil {
			msg = ": " + *p
		}
		return fmt.Errorf("bench: the publisher connection did not open%s", msg)
	}
	var sumStart uint64
	for _, bc := range subs {
		sumStart += bc.start.Load()
	}
	if err := hooks.ready(); err != nil {
		return err
	}
	cpu0, cpuErr := procCPU(os.Getpid())
	start := time.Now()
	deadline := start.Add(r.cfg.Duration)
	r.deadline.Store(deadline.UnixNano())
	for _, bc := range pingers {
		bc.ping(bc.c)
	}
	for _, bc := range callers {
		bc.call(bc.c)
	}
	delivered := func() int64 { return r.m.deliveries.Load() }
	// The steady rate: deliveries received between 10 % and 90 % of the
	// publishing phase, so that neither its start (the pipeline filling)
	// nor its end (the last publications in flight) dilutes it.
	steady := make(chan float64, 1)
	go func() {
		sleepCtx(ctx, r.cfg.Duration/10)
		t0, n0 := time.Now(), delivered()
		sleepCtx(ctx, time.Until(start.Add(r.cfg.Duration*9/10)))
		t1, n1 := time.Now(), delivered()
		if ctx.Err() != nil || !t1.After(t0) {
			steady <- 0
			return
		}
		steady <- float64(n1-n0) / t1.Sub(t0).Seconds()
	}()
	// The measured phase ends when every expected delivery arrived (or,
	// without the publisher here, once deliveries stopped for a second),
	// and at the latest lateAfter after the last acknowledgement:
	// endPhase takes the phase's figures then. Deliveries after it, up to
	// the drain, are late; the expected ones never received, lost.
	var (
		elapsed time.Duration
		cpu1    float64
		cpuErr1 error
		onTime  int64
		final   uint64
		arrived func() bool
	)
	endPhase := func() {
		elapsed, onTime = time.Since(start), delivered()
		r.sendStop.Store(true)
		waitUntil(ctx, 10*time.Second, func() bool {
			var n int64
			for _, bc := range append(pingers, callers...) {
				n += bc.outstanding.Load()
			}
			return n == 0
		})
		cpu1, cpuErr1 = procCPU(os.Getpid())
		hooks.done()
	}
	if pub != nil {
		if r.cfg.PublishVia == "rest" {
			r.publishREST(ctx, pub, int64(len(subs)), deadline)
		} else {
			r.publish(ctx, pub, int64(len(subs)), deadline)
		}
		r.sendStop.Store(true)
		waitUntil(ctx, 10*time.Second, func() bool { return pub.outstanding.Load() == 0 })
		final = pub.maxOffset.Load()
		var expected int64
		for _, bc := range subs {
			expected += int64(final - bc.start.Load())
		}
		arrived = func() bool { return delivered() >= expected }
	} else {
		sleepCtx(ctx, time.Until(deadline))
		// Without the publisher's final offset (another process has it),
		// wait until deliveries stop.
		last, quietSince := delivered(), time.Now()
		arrived = func() bool {
			if d := delivered(); d != last {
				last, quietSince = d, time.Now()
			}
			return time.Since(quietSince) > time.Second
		}
	}
	awaitDeliveries(ctx, lateAfter, r.cfg.Drain, arrived, endPhase)
	late := delivered() - onTime

	if r.cfg.Scenario == "mixed" {
		phase := min(elapsed, r.cfg.Duration).Seconds()
		res.Mixed = &MixedResult{
			Pingers: int64(len(pingers)), Pings: r.pings.Load(), PingsPerSec: float64(r.pings.Load()) / phase,
			PingLatency: summarize(r.pingHist.counts()),
			Machines:    len(machines), Callers: int64(len(callers)), Calls: r.calls.Load(),
			CallsPerSec: float64(r.calls.Load()) / phase, CallLatency: summarize(r.callHist.counts()),
		}
	}
	f := &FanoutResult{Subscribers: int64(len(subs)), Rate: r.cfg.Rate, Window: r.cfg.Window, SizeBytes: r.cfg.Size,
		FinalOffset: final, SumStartOffset: sumStart, PublishAck: summarize(r.ackHist.counts())}
	for _, bc := range subs {
		f.Deliveries += bc.recv.Load()
		f.Gaps += bc.gaps.Load()
		f.Duplicates += bc.dups.Load()
		f.Unsubscribed += bc.unsubscribed.Load()
		f.Unrecovered += bc.unrecovered.Load()
	}
	if pub != nil {
		f.Publications = pub.acked.Load()
		// Acknowledgements after the deadline are not part of the rate.
		f.PublicationsPerSec = float64(pub.ackedInTime.Load()) / r.cfg.Duration.Seconds()
		f.Expected = f.Subscribers*int64(final) - int64(sumStart)
		f.Lost = max(0, f.Expected-f.Deliveries)
		if f.Lost > 0 {
			// Lost, or still on their way after the drain? A second more
			// tells them apart without counting what it brings.
			at := delivered()
			sleepCtx(ctx, time.Second)
			f.ArrivingAfterDrain = delivered() - at
		}
	}
	f.Late = late
	f.DeliveriesPerSec = float64(f.inPhase()) / elapsed.Seconds()
	select {
	case f.SteadyDeliveriesPerSec = <-steady:
	case <-ctx.Done():
	}
	if cpuErr == nil && cpuErr1 == nil && f.inPhase() > 0 {
		f.ClientCPUUsPerDelivery = (cpu1 - cpu0) * 1e6 / float64(f.inPhase())
	}
	res.Fanout = f
	res.DurationS = elapsed.Seconds()
	res.Opened = int64(len(conns))
	return nil
}

// publish sends publications until deadline: at cfg.Rate per second, or,
// with rate 0, as fast as a window of cfg.Window publications allows, a
// publication counting as in flight until it is acknowledged and, on
// average, delivered to every subscriber of this process.
func (r *benchRun) publish(ctx context.Context, pub *benchConn, subs int64, deadline time.Time) {
	pad := max(0, r.cfg.Size-len(`{"ts":1700000000000000000,"pad":""}`))
	head := append([]byte(`","method":"channel.publish","params":{"topic":`), protocol.AppendString(nil, r.cfg.Topic)...)
	head = append(head, `,"data":{"ts":`...)
	tail := append(append([]byte(`,"pad":"`), bytes.Repeat([]byte{'x'}, pad)...), `"}}}`...)
	var buf []byte
	var seq int64
	send := func() {
		seq++
		buf = append(buf[:0], `{"type":"req","id":"p`...)
		buf = strconv.AppendInt(buf, seq, 10)
		buf = append(buf, head...)
		now := time.Now().UnixNano()
		r.pubSent[uint64(seq)%uint64(len(r.pubSent))].Store(now)
		buf = strconv.AppendInt(buf, now, 10)
		buf = append(buf, tail...)
		pub.outstanding.Add(1)
		if err := pub.c.SendText(buf); err != nil {
			pub.outstanding.Add(-1)
			r.fail("send publication: " + err.Error())
		}
	}
	window := int64(r.cfg.Window)
	if r.cfg.Rate == 0 {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			inFlight := seq - r.m.deliveries.Load()/max(subs, 1)
			if pub.outstanding.Load() >= window || (subs > 0 && inFlight >= window) {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			send()
		}
		return
	}
	// Paced: publication k is due at start + k/rate; at most 65,536 wait
	// for their acknowledgement.
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	next := time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			return
		}
		if now.Before(next) {
			time.Sleep(min(next.Sub(now), time.Until(deadline)))
			continue
		}
		if pub.outstanding.Load() < 1<<16 {
			send()
		} else {
			r.fail("publisher: 65,536 publications unacknowledged")
		}
		next = next.Add(interval)
	}
}
