package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// TestMetricsAtZero scrapes /metrics of a fresh server (no connection, no
// request but the contract documents): every junction_* series with a fixed
// label set is there at zero, so that dashboards and alerts work before the
// first event.
func TestMetricsAtZero(t *testing.T) {
	m := startServer(t, nil)
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]string{} // series → value
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			series[name] = value
		}
	}
	var want []string
	for _, reason := range []string{"missing", "malformed", "expired", "signature", "invalid_claims", "unknown_key", "revoked", "lockdown", "origin", "other"} {
		want = append(want, `junction_auth_failures_total{reason="`+reason+`"}`)
	}
	for _, d := range protocol.Disconnects() {
		want = append(want, `junction_disconnects_total{code="`+strconv.Itoa(d.Code)+`"}`)
	}
	want = append(want, `junction_disconnects_total{code="1006"}`, `junction_disconnects_total{code="other"}`)
	for _, o := range []string{"first", "replayed", "waited", "conflict", "taken_over"} {
		want = append(want, `junction_idempotent_requests_total{outcome="`+o+`"}`)
	}
	want = append(want,
		`junction_rpc_calls_total{outcome="ok",path="local"}`, `junction_rpc_calls_total{outcome="ok",path="remote"}`,
		"junction_connections", "junction_frames_in_total", "junction_frames_out_total", "junction_invalid_frames_total",
		"junction_unknown_method_total", "junction_stray_responses_total",
		"junction_channel_subscriptions", "junction_channel_publications_total", "junction_channel_deliveries_total",
		"junction_channel_snapshot_retries_total", "junction_rpc_progress_total", "junction_rpc_progress_dropped_total",
		"junction_rpc_serving_devices", `junction_rpc_stale_routes_total{reason="offline"}`, `junction_rpc_stale_routes_total{reason="unreachable"}`,
		"junction_schedule_jobs", `junction_schedule_runs_total{outcome="ok",trigger="schedule"}`,
		`junction_schedule_runs_total{outcome="error",trigger="manual"}`, `junction_schedule_ticks_skipped_total{reason="lease_taken"}`,
		`junction_service_restarts_total{reason="error",service="scheduler"}`, `junction_service_restarts_total{reason="panic",service="store.prune"}`)
	for _, s := range want {
		v, ok := series[s]
		switch {
		case !ok:
			t.Errorf("/metrics of a fresh server: %s is missing", s)
		case v != "0":
			t.Errorf("/metrics of a fresh server: %s = %s, want 0", s, v)
		}
	}
}
