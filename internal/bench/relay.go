package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// The relay scenario measures RPC calls relayed by the gateway: caller →
// gateway → machine → gateway → caller (docs/rpc.md). --machines machine
// connections register relayMethod with rpc.register and echo the params of
// every request they are relayed; --conns caller connections each keep
// --window rpc.call requests outstanding, caller i calling machine
// i % --machines of its own process. All connections belong to one user, so
// no grant is needed. Each call's id starts with its send time, so a
// response gives its round-trip time without a table of calls in flight.

// relayMethod is the method the bench machines serve.
const relayMethod = "bench.echo"

// relayParams are the params of every relayed call (echoed as its result).
const relayParams = `{"cmd":"echo","n":42}`

// RelayResult is the relay section of the result line.
type RelayResult struct {
	Machines int     `json:"machines"`
	Callers  int64   `json:"callers"`
	Window   int     `json:"window"`
	Calls    int64   `json:"calls"`
	PerSec   float64 `json:"per_sec"`
	// ClientCPUUsPerCall is this load generator's own CPU time (user and
	// system, all its processes) per call: what the client side costs.
	ClientCPUUsPerCall float64 `json:"client_cpu_us_per_call,omitempty"`
	clientCPUSeconds   float64 // summed over the children before the division
}

// relayTokens mints the scenario's credentials with the data directory's
// key: connections 0..machines-1 are machines (kind machine, scope
// rpc.serve), the rest are callers (kind phone, scopes read and write), all
// of user bench-relay-<prefix>.
func (c *Config) relayTokens(prefix string) (tokenSource, error) {
	mint, err := c.tokenMinter()
	if err != nil {
		return nil, err
	}
	user, machines := "bench-relay-"+prefix, c.Machines
	return func(i int) (string, error) {
		cl := Claims{User: user, Device: relayCallerDevice(prefix, i-machines), Kind: "phone",
			Scopes: []string{scopeRead, scopeWrite}}
		if i < machines {
			cl.Device, cl.Kind, cl.Scopes = relayMachineDevice(prefix, i), "machine", []string{scopeRead, scopeRPCServe}
		}
		return mint(cl)
	}, nil
}

func relayMachineDevice(prefix string, i int) string {
	return "bench-" + prefix + "m" + strconv.Itoa(i)
}
func relayCallerDevice(prefix string, i int) string { return "bench-" + prefix + "c" + strconv.Itoa(i) }

// relay runs the scenario: machines register, callers call them for the
// duration, then the calls in flight drain.
func (r *benchRun) relay(ctx context.Context, hooks phaseHooks, res *Result) error {
	machines := r.cfg.Machines
	conns, err := r.open(ctx, machines+r.cfg.Conns, func(i int) int {
		if i < machines {
			return kindMachine
		}
		return kindCaller
	})
	if err != nil {
		return err
	}
	defer r.teardown(conns)
	var callers []*benchConn
	nMachines := 0
	for _, bc := range conns {
		if bc.kind == kindMachine {
			nMachines++
		} else {
			callers = append(callers, bc)
		}
	}
	if nMachines != machines {
		return fmt.Errorf("bench: %d of %d machine connections opened", nMachines, machines)
	}
	prefix := r.prefix()
	for _, bc := range callers {
		bc.req = relayCallPrefix(relayMachineDevice(prefix, (bc.index-machines)%machines))
	}
	if err := hooks.ready(); err != nil {
		return err
	}
	cpu0, cpuErr := procCPU(os.Getpid())
	elapsed := r.windowed(ctx, callers, func(bc *benchConn) { bc.call(bc.c) }, 15*time.Second)
	cpu1, cpuErr1 := procCPU(os.Getpid())
	hooks.done()
	n := r.calls.Load()
	res.DurationS = elapsed.Seconds()
	res.Opened = int64(len(conns))
	rr := &RelayResult{Machines: machines, Callers: int64(len(callers)), Window: r.cfg.Window, Calls: n,
		PerSec: float64(n) / elapsed.Seconds()}
	if cpuErr == nil && cpuErr1 == nil {
		rr.clientCPUSeconds = cpu1 - cpu0
		if n > 0 {
			rr.ClientCPUUsPerCall = rr.clientCPUSeconds * 1e6 / float64(n)
		}
	}
	res.Relay = rr
	return nil
}

// relayCallPrefix is what follows a call's id in its rpc.call request.
func relayCallPrefix(device string) []byte {
	b := append([]byte(`","method":"rpc.call","params":{"target":{"deviceId":`), protocol.AppendString(nil, device)...)
	b = append(b, `},"method":"`+relayMethod+`","params":`+relayParams+`,"timeoutMs":10000}}`...)
	return b
}

// call sends one rpc.call whose id is its send time and a sequence number.
func (bc *benchConn) call(c *ws.Conn) {
	var buf [256]byte
	b := append(buf[:0], `{"type":"req","id":"`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, bc.seq.Add(1), 10)
	b = append(b, bc.req...)
	bc.outstanding.Add(1)
	if err := c.SendText(b); err != nil {
		bc.outstanding.Add(-1)
		bc.run.fail("send rpc.call: " + err.Error())
	}
}

var (
	prefixRequest = []byte(`{"type":"req","id":"`)
	markParams    = []byte(`,"params":`)
	markMeta      = []byte(`,"meta":`)
	registerReq   = []byte(`{"type":"req","id":"reg","method":"rpc.register","params":{"methods":["` + relayMethod + `"]}}`)
)

// onRelayFrame handles a frame on a machine or caller connection.
func (bc *benchConn) onRelayFrame(c *ws.Conn, f []byte) {
	r := bc.run
	switch {
	case bytes.HasPrefix(f, prefixRequest):
		bc.serveRelayed(c, f)
	case bytes.HasPrefix(f, prefixResult):
		id, ok, _ := responseID(f)
		if !ok {
			r.fail(string(f[:min(len(f), 300)]))
		}
		if bc.kind == kindMachine {
			if string(id) == "reg" {
				if !ok {
					r.setupFailed.Add(1)
					return
				}
				r.ready.Add(1)
			}
			return
		}
		now := time.Now().UnixNano()
		if sent, valid := leadingUint(id); valid {
			bc.hist.record(now - int64(sent))
		}
		if ok && now < r.deadline.Load() {
			r.calls.Add(1)
			r.m.ops.Add(1)
		}
		bc.outstanding.Add(-1)
		if !r.sendStop.Load() {
			bc.call(c)
		}
	case bytes.HasPrefix(f, eventWelcome):
		if bc.kind == kindMachine {
			if err := c.SendText(registerReq); err != nil {
				r.fail("send rpc.register: " + err.Error())
			}
			return
		}
		r.ready.Add(1)
	case bytes.HasPrefix(f, []byte(`{"type":"event","event":"rpc.cancel"`)):
		r.fail("machine received rpc.cancel: " + string(f[:min(len(f), 300)]))
	case bytes.HasPrefix(f, []byte(`{"type":"event","event":"error"`)):
		r.fail(string(f[:min(len(f), 300)]))
	}
}

// serveRelayed answers a request relayed to a machine with its params as
// the result. The server encodes a relayed request as id, method, params,
// meta, in that order.
func (bc *benchConn) serveRelayed(c *ws.Conn, f []byte) {
	rest := f[len(prefixRequest):]
	end := bytes.IndexByte(rest, '"')
	p := bytes.Index(f, markParams)
	m := bytes.LastIndex(f, markMeta)
	if bc.kind != kindMachine || end < 0 || p < 0 || m < p {
		bc.run.fail("unexpected request: " + string(f[:min(len(f), 300)]))
		return
	}
	id, params := rest[:end], f[p+len(markParams):m]
	var buf [256]byte
	b := append(buf[:0], `{"type":"res","id":"`...)
	b = append(b, id...)
	b = append(b, `","ok":true,"result":`...)
	b = append(b, params...)
	b = append(b, '}')
	if err := c.SendText(b); err != nil {
		bc.run.fail("send response: " + err.Error())
	}
}

// prefix is the device and user name prefix of this process (see runScenario).
func (r *benchRun) prefix() string {
	if r.cfg.Child >= 0 {
		return "p" + strconv.Itoa(r.cfg.Child) + "-"
	}
	return ""
}
