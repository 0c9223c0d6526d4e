package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/junctionhq/junction/internal/bench"
)

// TestBenchAppStreams runs 'junction bench --scenario appstreams' small
// (4 devices × 5 apps) against the real server: apps registered over the
// admin REST API, installed, started by each device, session.start
// webhooks verified by the bench's receiver, the app sessions connected
// with key and ticket and subscribed; every transcript event and audio
// frame reaches every session, in order, with a latency sample each.
func TestBenchAppStreams(t *testing.T) {
	m := startServer(t, noRateLimit)
	res := runBenchJSON(t, m, "--scenario", "appstreams", "--devices", "4", "--apps", "5", "--duration", "1s",
		"--rate", "20", "--audio-rate", "50", "--size", "320", "--server-pid", strconv.Itoa(os.Getpid()))
	if res.Errors != 0 {
		t.Fatalf("errors: %d (first %q), want 0", res.Errors, res.FirstError)
	}
	a := res.AppStreams
	if a != nil && a.Transcript != nil && a.Audio != nil {
		t.Logf("transcript %+v %+v; audio %+v %+v", *a.Transcript, a.Transcript.Latency, *a.Audio, a.Audio.Latency)
	}
	if a == nil || a.Devices != 4 || a.Apps != 5 || a.Sessions != 20 || res.Opened != 24 {
		t.Fatalf("appstreams %+v, opened %d: want 4 devices × 5 apps, 20 sessions, 24 connections", a, res.Opened)
	}
	for name, s := range map[string]*struct {
		pub, exp, del, gaps, jumps, missing, pubErrs int64
		lat                                          uint64
	}{
		"transcript": {a.Transcript.Published, a.Transcript.Expected, a.Transcript.Delivered, a.Transcript.Gaps, a.Transcript.SeqJumps,
			a.Transcript.Missing, a.Transcript.PublishErrors, latCount(a.Transcript.Latency)},
		"audio": {a.Audio.Published, a.Audio.Expected, a.Audio.Delivered, a.Audio.Gaps, a.Audio.SeqJumps,
			a.Audio.Missing, a.Audio.PublishErrors, latCount(a.Audio.Latency)},
	} {
		// At least half the rate × duration × devices: a loaded machine
		// may start the senders late.
		if s.pub < 4*10/2 || s.exp != s.pub*5 {
			t.Errorf("%s: published %d, expected %d; want >= 20 and 5 per publication", name, s.pub, s.exp)
		}
		if s.del != s.exp || s.missing != 0 || s.gaps != 0 || s.jumps != 0 || s.pubErrs != 0 {
			t.Errorf("%s: delivered %d of %d, missing %d, gaps %d, sequence breaks %d, publish errors %d; want all, none",
				name, s.del, s.exp, s.missing, s.gaps, s.jumps, s.pubErrs)
		}
		if s.lat != uint64(s.del) {
			t.Errorf("%s: %d latency samples, want one per delivery (%d)", name, s.lat, s.del)
		}
	}
	if res.Server == nil || res.Server.CPUUsPerDelivery <= 0 {
		t.Errorf("server stats %+v: want CPU per delivery", res.Server)
	}
}

func latCount(l *bench.LatencyStats) uint64 {
	if l == nil {
		return 0
	}
	return l.Count
}
