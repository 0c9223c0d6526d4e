package apps

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/arbiter"
	"github.com/junctionhq/junction/protocol"
)

// The executor path of an output request (issue 13, item 11): x.do hands
// the input to the device's executor goroutine, which runs the arbiter on
// the real clock, encodes each command as the device's output.show or
// output.clear payload and each event as the app's output.status payload
// (the JSON Service.outputs builds), and replies. What it leaves out: the
// socket writes (hub.Conn.SendEvent) and output.request's two store reads
// (the session and the app), which the loopback fan-out bench covers.
//
//	go test -run '^$' -bench OutputExec -benchmem ./internal/apps

// benchExec starts an executor for device whose deliveries are encoded
// and counted.
func benchExec(b *testing.B, device string, metrics arbiter.Metrics, sent *atomic.Int64) *devExec {
	cfg := arbiter.Config{Surfaces: []arbiter.Surface{{Name: "main"}, {Name: "overlay", MinInterval: 300 * time.Millisecond}, {Name: "led"}},
		Metrics: metrics}
	toDevice := func(cmd arbiter.Command, appID string) {
		var data []byte
		if cmd.Op == arbiter.Show {
			data, _ = json.Marshal(protocol.OutputShow{Surface: cmd.Surface, AppID: appID, SessionID: cmd.Request.App,
				RequestID: statusOf(arbiter.Event{Request: cmd.Request.ID, App: cmd.Request.App}, "").RequestID, Content: cmd.Request.Content})
		} else {
			data, _ = json.Marshal(protocol.OutputClear{Surface: cmd.Surface})
		}
		sent.Add(int64(len(data)))
	}
	toApp := func(_ string, st protocol.OutputStatus) {
		data, _ := json.Marshal(st)
		sent.Add(int64(len(data)))
	}
	x, err := newDevExec(device, cfg, realClock{now: time.Now}, toDevice, toApp)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go x.run(ctx)
	b.Cleanup(func() { cancel(); <-x.done })
	return x
}

// benchOutputInput is input i of a session's stream of requests: the
// classes and surfaces of the arbiter's bench, a TTL on every third, a
// cancel of the previous one on every tenth.
func benchOutputInput(sid string, i int) func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
	classes := [...]arbiter.Class{arbiter.System, arbiter.Foreground, arbiter.Background, arbiter.Background, arbiter.Ambient}
	surfaces := [...]string{"main", "overlay", "led"}
	id := sid + "/r" + strconv.Itoa(i%1024)
	if i%10 == 9 {
		prev := sid + "/r" + strconv.Itoa((i-1)%1024)
		return func(a *arbiter.Arbiter, now time.Time) arbiter.Output { return a.Cancel(now, sid, prev) }
	}
	req := arbiter.Request{ID: id, App: sid, Class: classes[i%len(classes)], Surface: surfaces[i%len(surfaces)],
		Content: []byte(`{"text":"caption text of a typical length"}`)}
	if i%3 == 0 {
		req.TTL = 200 * time.Millisecond
	}
	return func(a *arbiter.Arbiter, now time.Time) arbiter.Output { return a.Request(now, req) }
}

// BenchmarkOutputExec: one device's executor, inputs from one caller at a
// time (the latency of one output.request's arbitration step).
func BenchmarkOutputExec(b *testing.B) {
	var sent atomic.Int64
	x := benchExec(b, "dev1", arbiter.NewPrometheus(prometheus.NewRegistry()), &sent)
	sids := []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sid := sids[i%len(sids)]
		if err := x.do(ctx, benchOutputInput(sid, i/len(sids))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	if sent.Load() == 0 {
		b.Fatal("nothing was delivered")
	}
}

// BenchmarkOutputExecDevices: 200 devices' executors, callers on every
// CPU, each input to a device picked round robin (the gateway's aggregate
// decisions per second, one shared Prometheus counter).
func BenchmarkOutputExecDevices(b *testing.B) {
	var sent atomic.Int64
	metrics := arbiter.NewPrometheus(prometheus.NewRegistry())
	xs := make([]*devExec, 200)
	for i := range xs {
		xs[i] = benchExec(b, "dev"+strconv.Itoa(i), metrics, &sent)
	}
	var next atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // callers wait on the executor's reply: more of them than CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := int(next.Add(1))
			// Each device's inputs come from one session per caller slot,
			// so that request ids stay unique per device.
			x := xs[n%len(xs)]
			k := n / len(xs)
			if err := x.do(ctx, benchOutputInput("s"+strconv.Itoa(k%8), k/8)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	if sent.Load() == 0 {
		b.Fatal("nothing was delivered")
	}
}
