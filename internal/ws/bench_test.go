package ws

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
)

// nopHandler ignores everything.
type nopHandler struct{}

func (nopHandler) OnMessage(*Conn, []byte)    {}
func (nopHandler) OnClose(*Conn, int, string) {}

// serveUpgrades serves HTTP on 127.0.0.1 and upgrades every request with h,
// sending each connection to conns when it is not nil.
func serveUpgrades(tb testing.TB, tr *Transport, h Handler, conns chan<- *Conn) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := tr.Upgrade(w, r, "", h)
		if err == nil && conns != nil {
			conns <- c
		}
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String()
}

// BenchmarkFanout sends one prepared frame per iteration to N connections
// whose clients (in this process, on the same cores) read and discard, and
// reports deliveries per second. (10,000 connections would need 20,000 file
// descriptors in one process, the machine's limit.)
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { benchmarkFanout(b, n) })
	}
}

func benchmarkFanout(b *testing.B, n int) {
	payload := []byte(`{"type":"event","event":"channel.message","topic":"public:bench","offset":1,"data":{"n":1234567}}`)
	frame := PrepareText(payload)

	tr := New(Config{MaxQueueFrames: 1 << 16, MaxQueueBytes: 64 << 20, PingInterval: -1})
	if err := tr.Start(); err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer tr.Close()
	conns := make(chan *Conn, n)
	url := serveUpgrades(b, tr, nopHandler{}, conns)

	var received atomic.Int64
	var wg sync.WaitGroup
	clients := make([]net.Conn, 0, n)
	for range n {
		nc, _, _, err := gws.Dialer{}.Dial(context.Background(), url)
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		clients = append(clients, nc)
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				k, err := nc.Read(buf)
				received.Add(int64(k))
				if err != nil {
					return
				}
			}
		})
	}
	defer func() {
		for _, nc := range clients {
			nc.Close()
		}
		wg.Wait()
	}()
	server := make([]*Conn, 0, n)
	for range n {
		server = append(server, <-conns)
	}

	perPub := int64(n * len(frame))
	const window = 256 // publications in flight
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for _, c := range server {
			if err := c.Send(frame); err != nil {
				b.Fatalf("Send: %v", err)
			}
		}
		if i%32 == 0 {
			for received.Load() < int64(i+1-window)*perPub {
				runtime.Gosched()
			}
		}
	}
	for received.Load() < int64(b.N)*perPub {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*n), "ns/delivery")
}

// TestMain runs the idle-clients helper instead of the tests when
// BenchmarkIdleConnMemory starts the test binary with
// JUNCTION_WS_IDLE_CLIENTS=url,n, so that the idle clients live in another
// process and do not count in the server's memory. The helper is not a test:
// a normal run neither lists nor skips it.
func TestMain(m *testing.M) {
	if spec := os.Getenv("JUNCTION_WS_IDLE_CLIENTS"); spec != "" {
		os.Exit(idleClients(spec))
	}
	os.Exit(m.Run())
}

// idleClients dials n clients to url, prints "ready" and holds them until
// stdin closes.
func idleClients(spec string) int {
	url, ns, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(ns)
	conns := make([]net.Conn, 0, n)
	for range n {
		nc, _, _, err := gws.Dialer{}.Dial(context.Background(), url)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		conns = append(conns, nc)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes stdin
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// BenchmarkIdleConnMemory opens 2,000 idle connections (clients in a child
// process) and reports the server's heap and stack bytes per connection,
// measured after GC, including what net/http and the runtime's netpoller
// keep per connection. Run it with -benchtime=1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	tr := New(Config{})
	if err := tr.Start(); err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer tr.Close()
	url := serveUpgrades(b, tr, nopHandler{}, nil)

	// Warm up one connection so that one-time allocations are not counted.
	warm, _, _, err := gws.Dialer{}.Dial(context.Background(), url)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	defer warm.Close()
	waitFor(b, func() bool { return tr.Len() == 1 }, "warm-up connection")

	before := memInUse()
	cmd := exec.Command(os.Args[0]) // TestMain runs the helper
	cmd.Env = append(os.Environ(), "JUNCTION_WS_IDLE_CLIENTS="+url+","+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start clients: %v", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		b.Fatalf("client process: %q", line)
	}
	waitFor(b, func() bool { return tr.Len() == n+1 }, "idle connections")
	time.Sleep(200 * time.Millisecond) // let the HTTP handler goroutines exit
	after := memInUse()
	b.ReportMetric(float64(after-before)/n, "bytes/conn")
}

// memInUse returns heap and stack bytes in use after a full GC.
func memInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
