package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerStats is what the load generator measured of the server process:
// memory from /proc/PID/status and the server's /metrics, CPU time from
// /proc/PID/stat. With several --server-pid (the nodes of a cluster), the
// /proc figures are summed over them and the /metrics ones are the first
// node's.
type ServerStats struct {
	PID  int   `json:"pid,omitempty"`
	PIDs []int `json:"pids,omitempty"` // every process summed, when more than one
	// RSS before any connection was opened and once all were open.
	RSSBeforeBytes  int64   `json:"rss_before_bytes,omitempty"`
	RSSAfterBytes   int64   `json:"rss_after_bytes,omitempty"`
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes,omitempty"`
	// go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes from
	// /metrics, at the same two moments (no GC is forced).
	HeapBeforeBytes  int64   `json:"heap_stack_before_bytes,omitempty"`
	HeapAfterBytes   int64   `json:"heap_stack_after_bytes,omitempty"`
	HeapPerConnBytes float64 `json:"heap_stack_per_conn_bytes,omitempty"`
	// CPU (user+system) over the measured phase and its drain.
	CPUSeconds          float64 `json:"cpu_s,omitempty"`
	CPUUsPerDelivery    float64 `json:"cpu_us_per_delivery,omitempty"`
	CPUSPer1kDeliveries float64 `json:"cpu_s_per_1k_deliveries,omitempty"`
	CPUUsPerOp          float64 `json:"cpu_us_per_op,omitempty"`
	// Write system calls (syscw of /proc/PID/io) over the same span: how
	// well the server batches frames into one write.
	WriteSyscalls             int64   `json:"write_syscalls,omitempty"`
	DeliveriesPerWriteSyscall float64 `json:"deliveries_per_write_syscall,omitempty"`
}

// serverProbe samples the server at the start of a run (start), when the
// measured phase begins (begin) and when it ends (end).
type serverProbe struct {
	pids       []int
	metricsURL string
	redis      []string // Redis shards' loopback host:port

	redis0, redis1 []redisInfo // per shard, at begin and end

	rss0, rss1   int64
	heap0, heap1 int64
	cpu0, cpu1   float64
	cpuOK        bool
	syscw0       int64
	syscw1       int64
}

func (p *serverProbe) start(ctx context.Context) {
	if len(p.pids) > 0 {
		p.rss0, _ = sumProcs(p.pids, procRSS)
	}
	p.heap0, _ = scrapeHeap(ctx, p.metricsURL)
}

func (p *serverProbe) begin(ctx context.Context) {
	if len(p.pids) > 0 {
		p.rss1, _ = sumProcs(p.pids, procRSS)
		var err error
		p.cpu0, err = sumProcs(p.pids, procCPU)
		p.cpuOK = err == nil
		p.syscw0, _ = sumProcs(p.pids, procWrites)
	}
	p.heap1, _ = scrapeHeap(ctx, p.metricsURL)
	p.redis0 = readRedisInfos(ctx, p.redis)
}

func (p *serverProbe) end(ctx context.Context) {
	if len(p.pids) > 0 && p.cpuOK {
		var err error
		p.cpu1, err = sumProcs(p.pids, procCPU)
		p.cpuOK = err == nil
		p.syscw1, _ = sumProcs(p.pids, procWrites)
	}
	p.redis1 = readRedisInfos(ctx, p.redis)
}

// sumProcs sums f over the processes pids.
func sumProcs[T int64 | float64](pids []int, f func(int) (T, error)) (T, error) {
	var sum T
	for _, pid := range pids {
		v, err := f(pid)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// stats derives the per-connection and per-delivery figures for r.
func (p *serverProbe) stats(r *Result) *ServerStats {
	s := &ServerStats{RSSBeforeBytes: p.rss0, RSSAfterBytes: p.rss1}
	if len(p.pids) > 0 {
		s.PID = p.pids[0]
	}
	if len(p.pids) > 1 {
		s.PIDs = p.pids
	}
	if p.heap0 > 0 && p.heap1 > 0 {
		s.HeapBeforeBytes, s.HeapAfterBytes = p.heap0, p.heap1
	}
	if r.Scenario == "idle" && r.Opened > 0 {
		if p.rss0 > 0 && p.rss1 > 0 {
			s.RSSPerConnBytes = float64(p.rss1-p.rss0) / float64(r.Opened)
		}
		if s.HeapAfterBytes > 0 {
			s.HeapPerConnBytes = float64(s.HeapAfterBytes-s.HeapBeforeBytes) / float64(r.Opened)
		}
	}
	if p.cpuOK {
		s.CPUSeconds = p.cpu1 - p.cpu0
		switch {
		case r.Fanout != nil && r.Fanout.inPhase() > 0:
			s.CPUUsPerDelivery = s.CPUSeconds * 1e6 / float64(r.Fanout.inPhase())
			s.CPUSPer1kDeliveries = s.CPUSeconds * 1e3 / float64(r.Fanout.inPhase())
		case r.AppStreams != nil && r.AppStreams.delivered() > 0:
			s.CPUUsPerDelivery = s.CPUSeconds * 1e6 / float64(r.AppStreams.delivered())
			s.CPUSPer1kDeliveries = s.CPUSeconds * 1e3 / float64(r.AppStreams.delivered())
		case r.Connect != nil && r.Connect.Connects > 0:
			s.CPUUsPerOp = s.CPUSeconds * 1e6 / float64(r.Connect.Connects)
		case r.RPC != nil && r.RPC.Pings > 0:
			s.CPUUsPerOp = s.CPUSeconds * 1e6 / float64(r.RPC.Pings)
		case r.Relay != nil && r.Relay.Calls > 0:
			s.CPUUsPerOp = s.CPUSeconds * 1e6 / float64(r.Relay.Calls)
		}
	}
	if p.syscw0 > 0 && p.syscw1 > p.syscw0 {
		s.WriteSyscalls = p.syscw1 - p.syscw0
		if r.Fanout != nil {
			s.DeliveriesPerWriteSyscall = float64(r.Fanout.inPhase()) / float64(s.WriteSyscalls)
		}
	}
	if s.RSSBeforeBytes == 0 && s.RSSAfterBytes == 0 && s.HeapBeforeBytes == 0 && s.CPUSeconds == 0 && s.WriteSyscalls == 0 {
		return nil
	}
	return s
}

// procRSS returns VmRSS of process pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// procWrites returns the write system calls process pid has made (syscw in
// /proc/PID/io: write, writev, sendmsg...).
func procWrites(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no syscw in /proc io")
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100
// on every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the user+system CPU seconds process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start at
	// field 3, so utime (14) and stime (15) are 11 and 12 here.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / clockTicks, nil
}

// scrapeHeap returns go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes
// from the server's Prometheus endpoint, or an error when it is unreachable.
func scrapeHeap(ctx context.Context, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var heap, stack float64
	var found int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			heap, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			found++
		case "go_memstats_stack_inuse_bytes":
			stack, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			found++
		}
		if err != nil {
			return 0, err
		}
	}
	if found != 2 {
		return 0, errors.New("metrics: go_memstats_heap_inuse_bytes or go_memstats_stack_inuse_bytes missing")
	}
	return int64(heap + stack), nil
}
