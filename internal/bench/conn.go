package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gws "github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// benchDialer opens the load generator's connections: a TCP dial from one of
// the loopback source addresses, then the WebSocket handshake with a bearer
// token. It never dials anything but a loopback address (checked in
// ParseFlags).
type benchDialer struct {
	nodes   []node          // set once: the servers (--url), at least one
	nodeOf  func(i int) int // set once: the index in nodes connection i dials; nil: the first
	sources []netip.Addr    // set once: local addresses, round-robin; empty = kernel's choice
	tokens  tokenSource     // set once
	next    atomic.Uint64
}

// node returns the server connection i dials.
func (d *benchDialer) node(i int) node {
	if d.nodeOf == nil || len(d.nodes) == 1 {
		return d.nodes[0]
	}
	return d.nodes[d.nodeOf(i)%len(d.nodes)]
}

// tokenSource returns the credential for connection i.
type tokenSource func(i int) (string, error)

// fixedToken hands every connection the same token.
func fixedToken(tok string) tokenSource {
	return func(int) (string, error) { return tok, nil }
}

// Claims are the identity one minted token carries.
type Claims struct {
	User   string
	Device string
	Kind   string   // device kind: machine, phone, ...
	Scopes []string // token scopes as on the wire: read, write, rpc.serve
}

// Token scopes the load generator asks for, as docs/PROTOCOL.md names them.
const (
	scopeRead     = "read"
	scopeWrite    = "write"
	scopeRPCServe = "rpc.serve"
)

// Minter opens the signing key of the data directory data for the token
// algorithm alg (--data, --alg) and returns a function that mints an access
// token for a Claims, valid for longer than any run (--duration is at most
// an hour). Keys and tokens are the server's business: cmd/junction provides
// the Minter. It is called only when --data is set, in the process that opens
// the connections.
type Minter func(data, alg string) (func(Claims) (string, error), error)

// mintingTokens mints, with the data directory's key, a token for a distinct
// user and device per connection index (bench-<prefix><i>), with scopes
// read and write.
func (c *Config) mintingTokens(prefix string) (tokenSource, error) {
	mint, err := c.tokenMinter()
	if err != nil {
		return nil, err
	}
	return func(i int) (string, error) {
		id := "bench-" + prefix + strconv.Itoa(i)
		return mint(Claims{User: id, Device: id, Kind: "machine", Scopes: []string{scopeRead, scopeWrite}})
	}, nil
}

// tokenMinter returns c.Minter's function for the data directory's key.
func (c *Config) tokenMinter() (func(Claims) (string, error), error) {
	if c.Minter == nil {
		return nil, errors.New("bench: --data: no token minter configured")
	}
	return c.Minter(c.Data, c.Alg)
}

// premint mints the tokens of connections 0..n-1 once.
func premint(src tokenSource, n int) (tokenSource, error) {
	toks := make([]string, n)
	for i := range toks {
		var err error
		if toks[i], err = src(i); err != nil {
			return nil, fmt.Errorf("bench: mint token: %w", err)
		}
	}
	return func(i int) (string, error) { return toks[i%n], nil }, nil
}

// dial opens connection i and completes the handshake. It returns the
// connection and the bytes the handshake reader had already buffered (the
// welcome event may be among them).
func (d *benchDialer) dial(ctx context.Context, i int) (net.Conn, []byte, error) {
	tok, err := d.tokens(i)
	if err != nil {
		return nil, nil, fmt.Errorf("token: %w", err)
	}
	nd := net.Dialer{Timeout: 10 * time.Second}
	if len(d.sources) > 0 {
		src := d.sources[d.next.Add(1)%uint64(len(d.sources))]
		nd.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	n := d.node(i)
	nc, err := nd.DialContext(ctx, "tcp", n.target)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	wd := gws.Dialer{
		Protocols: []string{protocol.Subprotocol},
		Header:    gws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}}),
	}
	br, _, err := wd.Upgrade(nc, n.u)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	var buffered []byte
	if br != nil {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			buffered = append([]byte(nil), b...)
		}
		gws.PutReader(br)
	}
	return nc, buffered, nil
}

// readServerText reads the next text message sent by the server on a
// blocking connection, answering nothing (used by the connect scenario,
// which only waits for the welcome).
func readServerText(r io.Reader) ([]byte, error) {
	for {
		h, err := gws.ReadHeader(r)
		if err != nil {
			return nil, err
		}
		if h.Length > 1<<20 {
			return nil, fmt.Errorf("frame of %d bytes", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case gws.OpText:
			return p, nil
		case gws.OpClose:
			code, reason := gws.ParseCloseFrameData(p)
			return nil, fmt.Errorf("closed by server: %d %s", code, reason)
		}
	}
}

// newBufferedReader returns a reader over the handshake leftovers followed
// by the connection.
func newBufferedReader(buffered []byte, nc net.Conn) io.Reader {
	if len(buffered) == 0 {
		return bufio.NewReaderSize(nc, 4096)
	}
	return io.MultiReader(bytes.NewReader(buffered), bufio.NewReaderSize(nc, 4096))
}

// Hot-path frame scanning. The server encodes frames with protocol.Append*,
// so each frame starts with a fixed prefix and members appear in a fixed
// order; the load generator finds what it needs without decoding JSON.
var (
	prefixResult  = []byte(`{"type":"res","id":"`)
	prefixEvent   = []byte(`{"type":"event","event":"`)
	eventMessage  = []byte(`{"type":"event","event":"channel.message"`)
	eventWelcome  = []byte(`{"type":"event","event":"welcome"`)
	markOK        = []byte(`,"ok":true`)
	markOffset    = []byte(`"offset":`)
	markEpoch     = []byte(`"epoch":"`)
	markTimestamp = []byte(`"ts":`)
)

// scanUint returns the decimal number that follows mark in b.
func scanUint(b, mark []byte) (uint64, bool) {
	i := bytes.Index(b, mark)
	if i < 0 {
		return 0, false
	}
	return leadingUint(b[i+len(mark):])
}

// scanString returns the JSON string (without escapes, as epochs are) that
// follows mark, which ends with its opening quote.
func scanString(b, mark []byte) string {
	i := bytes.Index(b, mark)
	if i < 0 {
		return ""
	}
	rest := b[i+len(mark):]
	if end := bytes.IndexByte(rest, '"'); end >= 0 {
		return string(rest[:end])
	}
	return ""
}

// leadingUint parses the decimal digits at the start of b.
func leadingUint(b []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	return n, i > 0
}

// markDataTimestamp is what follows the offset of a channel.message whose
// data the load generator published: the send timestamp comes first.
var markDataTimestamp = []byte(`,"data":{"ts":`)

// messageFields returns the offset and the send timestamp of a
// channel.message frame (rest is what follows eventMessage) in one forward
// pass: the offset is searched for, the timestamp is looked for right after
// it (where protocol.AppendEvent and the publisher put it) and only
// searched for when it is elsewhere.
func messageFields(rest []byte) (off, ts uint64, hasOff, hasTS bool) {
	i := bytes.Index(rest, markOffset)
	if i < 0 {
		return 0, 0, false, false
	}
	rest = rest[i+len(markOffset):]
	n := 0
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
		off = off*10 + uint64(rest[n]-'0')
	}
	if n == 0 {
		return 0, 0, false, false
	}
	rest = rest[n:]
	if bytes.HasPrefix(rest, markDataTimestamp) {
		ts, hasTS = leadingUint(rest[len(markDataTimestamp):])
	} else {
		ts, hasTS = scanUint(rest, markTimestamp)
	}
	return off, ts, true, hasTS
}

// responseID returns the id of a response frame and whether it succeeded.
func responseID(frame []byte) (id []byte, ok, isRes bool) {
	if !bytes.HasPrefix(frame, prefixResult) {
		return nil, false, false
	}
	rest := frame[len(prefixResult):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false, true
	}
	return rest[:end], bytes.HasPrefix(rest[end+1:], markOK), true
}

// histogram is a lock-free log-linear histogram of durations in
// nanoseconds: 16 buckets per power of two (at most 6 % error).
type histogram struct {
	b [histBuckets]atomic.Uint64
}

const (
	histSub     = 16
	histBuckets = 60 * histSub
)

func histIndex(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 5
	return (e+1)*histSub + int(uint64(v)>>e) - histSub
}

// histValue returns the middle of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *histogram) record(d int64) { h.b[histIndex(d)].Add(1) }

// counts returns the bucket counts, trimmed of trailing zeros.
func (h *histogram) counts() []uint64 {
	out := make([]uint64, histBuckets)
	last := -1
	for i := range h.b {
		if out[i] = h.b[i].Load(); out[i] != 0 {
			last = i
		}
	}
	return out[:last+1]
}

// LatencyStats summarises a histogram in milliseconds.
type LatencyStats struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// summarize computes latency statistics from bucket counts.
func summarize(counts []uint64) *LatencyStats {
	var total uint64
	var sum float64
	for i, n := range counts {
		total += n
		sum += float64(n) * float64(histValue(i))
	}
	if total == 0 {
		return nil
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	q := func(p float64) float64 {
		rank := uint64(p*float64(total-1)) + 1
		var seen uint64
		for i, n := range counts {
			if seen += n; seen >= rank {
				return ms(histValue(i))
			}
		}
		return 0
	}
	st := &LatencyStats{Count: total, MeanMs: sum / float64(total) / 1e6, P50Ms: q(0.50), P99Ms: q(0.99), P999Ms: q(0.999)}
	for i := len(counts) - 1; i >= 0; i-- {
		if counts[i] != 0 {
			st.MaxMs = ms(histValue(i))
			break
		}
	}
	return st
}

// mergeCounts adds b's buckets to a.
func mergeCounts(a, b []uint64) []uint64 {
	if len(b) > len(a) {
		a = append(a, make([]uint64, len(b)-len(a))...)
	}
	for i, n := range b {
		a[i] += n
	}
	return a
}

// meter holds the live counters the progress display shows.
type meter struct {
	conns      atomic.Int64 // open connections
	ops        atomic.Int64 // connects, pings, publications or relayed calls completed
	deliveries atomic.Int64 // channel messages received
}

// progress redraws one line on w once a second until ctx ends.
func progress(ctx context.Context, w io.Writer, scenario string, m *meter) {
	start := time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastOps, lastDel int64
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-t.C:
		}
		ops, del := m.ops.Load(), m.deliveries.Load()
		line := fmt.Sprintf("\r\033[K%s %5.0fs  conns %d  %s/s %s", scenario, time.Since(start).Seconds(),
			m.conns.Load(), opsName(scenario), human(float64(ops-lastOps)))
		if scenario == "fanout" || scenario == "mixed" {
			line += "  deliveries/s " + human(float64(del-lastDel))
		}
		fmt.Fprint(w, line)
		lastOps, lastDel = ops, del
	}
}

func opsName(scenario string) string {
	switch scenario {
	case "connect":
		return "connects"
	case "rpc":
		return "pings"
	case "fanout", "mixed":
		return "publications"
	case "relay":
		return "calls"
	}
	return "ops"
}

// human formats a rate with a k or M suffix.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// loopbackAddr parses host as an IP address and refuses anything outside
// 127.0.0.0/8 and ::1 ("localhost" means 127.0.0.1).
func loopbackAddr(what, host string) (netip.Addr, error) {
	if host == "localhost" {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bench: %s %q is not an IP address: bench only targets loopback addresses (127.0.0.0/8, ::1)", what, host)
	}
	if !a.Unmap().IsLoopback() {
		return netip.Addr{}, fmt.Errorf("bench: %s %s is not a loopback address: bench only targets loopback addresses (127.0.0.0/8, ::1)", what, a)
	}
	return a.Unmap(), nil
}
