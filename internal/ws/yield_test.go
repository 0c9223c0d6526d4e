//go:build linux

package ws

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
)

// TestWritersLeaveAProcessor: when the writers are as many as the
// processors (the default), one of them is a helper, so that writers busy
// with a fan-out leave a processor for the rest, which polls the network: a
// goroutine waiting for it (an HTTP publisher's next request, a handshake)
// runs again only once some processor polls the network, which busy ones do
// not do (the runtime's monitor does it every 10 ms).
func TestWritersLeaveAProcessor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct{ procs, set, writers, helpers int }{
		{procs: 1, writers: 1, helpers: 0},
		{procs: 2, writers: 2, helpers: 1},
		{procs: 8, writers: 8, helpers: 1},
		{procs: 8, set: 4, writers: 4, helpers: 0}, // fewer writers leave processors anyway
		{procs: 2, set: 1, writers: 1, helpers: 0},
	} {
		runtime.GOMAXPROCS(tc.procs)
		cfg := Config{Writers: tc.set}.withDefaults()
		if cfg.Writers != tc.writers || cfg.helpers() != tc.helpers {
			t.Errorf("GOMAXPROCS %d, Writers %d: got %d writers, %d helpers; want %d, %d",
				tc.procs, tc.set, cfg.Writers, cfg.helpers(), tc.writers, tc.helpers)
		}
	}
}

// helperTakesBeforeStop returns what the helper writer takes when the
// writers are told to stop (nil: it was waiting, it took nothing).
func helperTakesBeforeStop(tr *Transport) []*Conn {
	got := make(chan []*Conn, 1)
	go func() { got <- tr.takeBacklog(nil) }()
	setStopWrite(tr, true)
	tr.helperCond.Broadcast()
	return <-got
}

func setStopWrite(tr *Transport, stop bool) {
	tr.readyMu.Lock()
	tr.stopWrite = stop
	tr.readyMu.Unlock()
}

// TestHelperTakesOnlyBacklog: the helper writer takes nothing while the
// ready list holds helperBacklog connections or fewer (it returns nil when
// the writers stop, having taken none), and a share once there are more;
// the other writers take from the list as before, first in first out.
func TestHelperTakesOnlyBacklog(t *testing.T) {
	tr := New(Config{Writers: 2, clock: func() int64 { return 1 }}) // every backlog fresh (helperBurst)
	conns := make([]*Conn, helperBacklog+1)
	for i := range conns {
		conns[i] = &Conn{}
	}
	tr.scheduleMany(conns[:helperBacklog])
	if batch := helperTakesBeforeStop(tr); batch != nil {
		t.Fatalf("helper took %d connections with %d ready; want none", len(batch), helperBacklog)
	}

	setStopWrite(tr, false)
	tr.schedule(conns[helperBacklog])
	batch := tr.takeBacklog(nil)
	if len(batch) != maxTake || batch[0] != conns[0] {
		t.Fatalf("helper took %d connections starting at %p with %d ready; want %d from the first %p",
			len(batch), batch[0], helperBacklog+1, maxTake, conns[0])
	}
	next := tr.takeReady(nil)
	if len(next) == 0 || next[0] != conns[maxTake] {
		t.Fatalf("writer after the helper got %d connections; want them from the %d-th, in order", len(next), maxTake)
	}
}

// TestHelperLeavesSustainedBacklog: the helper writer shares a backlog
// for its first helperBurst only; one that lasts longer is left to the
// other writers, and once the ready list ran dry the next backlog is a new
// burst the helper shares again.
func TestHelperLeavesSustainedBacklog(t *testing.T) {
	var now atomic.Int64
	now.Store(1)
	tr := New(Config{Writers: 2, clock: now.Load})
	conns := make([]*Conn, 2*helperBacklog+maxTake+2)
	for i := range conns {
		conns[i] = &Conn{}
	}
	next := 0
	schedule := func(n int) {
		tr.scheduleMany(conns[next : next+n])
		next += n
	}
	schedule(helperBacklog + 1)
	if batch := tr.takeBacklog(nil); len(batch) == 0 {
		t.Fatal("the helper took nothing from a fresh backlog")
	}

	now.Add(helperBurst)
	schedule(maxTake) // still more than helperBacklog waiting, in a backlog helperBurst old
	if batch := helperTakesBeforeStop(tr); batch != nil {
		t.Fatalf("the helper took %d connections from a backlog %v old; want none", len(batch), time.Duration(helperBurst))
	}

	setStopWrite(tr, false)
	for {
		tr.readyMu.Lock()
		empty := len(tr.ready) == tr.readyHead
		tr.readyMu.Unlock()
		if empty {
			break
		}
		tr.takeReady(nil)
	}
	now.Add(1)
	schedule(helperBacklog + 1)
	if batch := tr.takeBacklog(nil); len(batch) == 0 {
		t.Fatal("the helper took nothing from a new backlog after the list ran dry")
	}
}

// TestPublishCompletesWhileWritersSaturated: on two processors, with the
// default writers (one of them the helper) and a large fan-out queued, so that the ready list does not
// run dry while the clients drain it, sequential HTTP round trips to a
// net/http server in the same process (what a REST publisher does) complete,
// and the fan-out arrives whole and in order at every client. The test logs
// how many clients had the whole fan-out when the requests were done.
func TestPublishCompletesWhileWritersSaturated(t *testing.T) {
	if !epollSupported {
		t.Skip("the writers' pool is the epoll transport's")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))

	const conns, frames, requests, size = 16, 2048, 20, 1024
	var served atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		served.Add(1)
		_, _ = w.Write([]byte(`{"offset":1}`))
	}))
	defer api.Close()

	h := newTestHandler(false)
	_, wsURL := startServer(t, Config{Kind: Epoll, Loops: 1, MaxQueueFrames: frames, MaxQueueBytes: frames * (size + 16)}, h)
	clients := make([]*client, conns)
	servers := make([]*Conn, conns)
	for i := range conns {
		clients[i] = dial(t, wsURL)
		servers[i] = h.waitConn(t)
	}

	// Queue the whole fan-out first: from here on the writers have work
	// until the clients have read it all.
	var b Batch
	payload := make([]byte, size)
	for seq := range frames {
		binary.BigEndian.PutUint32(payload, uint32(seq))
		f := PrepareBinary(payload)
		for _, sc := range servers {
			if err := sc.SendBatch(&b, f); err != nil {
				t.Fatalf("queue frame %d: %v", seq, err)
			}
		}
	}
	b.Flush()

	var drained sync.WaitGroup
	var whole atomic.Int64 // clients that read the whole fan-out
	errs := make(chan error, conns)
	for i, c := range clients {
		drained.Go(func() {
			for seq := range frames {
				f, err := gws.ReadFrame(c.rw)
				if err != nil {
					errs <- fmt.Errorf("client %d, frame %d: %v", i, seq, err)
					return
				}
				if got := binary.BigEndian.Uint32(f.Payload); int(got) != seq {
					errs <- fmt.Errorf("client %d: got frame %d, want %d", i, got, seq)
					return
				}
			}
			whole.Add(1)
		})
	}

	for n := range requests {
		resp, err := http.Post(api.URL, "application/json", nil)
		if err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", n, resp.StatusCode)
		}
	}
	finished := whole.Load()

	drained.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := served.Load(); got != requests {
		t.Fatalf("server handled %d requests, want %d", got, requests)
	}
	t.Logf("%d of %d clients had the whole fan-out (%d frames each) when %d requests were done", finished, conns, frames, requests)
}
