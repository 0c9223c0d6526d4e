package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/supervise"
)

// readyServices reads /readyz's details.services.
func readyServices(t *testing.T, m *Main) (int, map[string]supervise.Status) {
	t.Helper()
	var body struct {
		Status  string `json:"status"`
		Details struct {
			Services []supervise.Status `json:"services"`
		} `json:"details"`
	}
	status, raw := apiCall(t, m, "", "GET", "/readyz", nil)
	if err := jsonUnmarshal(raw, &body); err != nil {
		t.Fatalf("/readyz %s: %v", raw, err)
	}
	out := map[string]supervise.Status{}
	for _, s := range body.Details.Services {
		out[s.Name] = s
	}
	return status, out
}

func scrape(t *testing.T, m *Main) string {
	t.Helper()
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// TestSupervisedServices: the server's background services run under the
// supervisor and show in /readyz; a service that fails (an error, then a
// panic) is restarted, shown and counted, and the server goes on serving;
// Close stops it.
func TestSupervisedServices(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Services.MinBackoff = 10 * time.Millisecond
		c.Services.MaxBackoff = 20 * time.Millisecond
	})
	status, svcs := readyServices(t, m)
	if status != 200 {
		t.Fatalf("/readyz: %d", status)
	}
	for _, name := range []string{"store.prune", "auth.failure_log"} {
		if s := svcs[name]; s.State != supervise.StateRunning {
			t.Errorf("/readyz services[%s]: %+v, want running", name, s)
		}
	}

	var runs atomic.Int32
	stopped := make(chan struct{})
	err := m.Supervisor.Go("test.flaky", func(ctx context.Context) error {
		switch runs.Add(1) {
		case 1:
			return errors.New("disk on fire")
		case 2:
			panic("flaky panic")
		}
		<-ctx.Done()
		close(stopped)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var s supervise.Status
	eventually(t, "the flaky service to run a third time", func() bool {
		_, svcs := readyServices(t, m)
		s = svcs["test.flaky"]
		return s.State == supervise.StateRunning && s.Restarts == 2
	})
	if s.LastError != "panic: flaky panic" || s.LastFailure.IsZero() {
		t.Errorf("status %+v, want the panic as the last error", s)
	}
	metrics := scrape(t, m)
	for _, want := range []string{
		`junction_service_restarts_total{reason="error",service="test.flaky"} 1`,
		`junction_service_restarts_total{reason="panic",service="test.flaky"} 1`,
		`junction_service_up{service="test.flaky"} 1`,
		`junction_service_up{service="store.prune"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Still serving.
	if status, _ := readyServices(t, m); status != 200 {
		t.Errorf("/readyz after the failures: %d, want 200", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Close returned before the service stopped")
	}
}
