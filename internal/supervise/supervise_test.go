package supervise

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Every test runs in a synctest bubble: time is the bubble's fake clock,
// so backoffs pass instantly and the times the tests read are exact.

func TestRestartWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		s := New(Config{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, ResetAfter: time.Minute}, nil, reg)
		t0 := time.Now()
		var mu sync.Mutex
		var starts []time.Duration
		healthy := make(chan struct{})
		err := s.Go("flaky", func(ctx context.Context) error {
			mu.Lock()
			starts = append(starts, time.Since(t0))
			n := len(starts)
			mu.Unlock()
			switch {
			case n <= 5:
				return errors.New("boom")
			case n == 6:
				// Runs long, then fails: the next wait is MinBackoff again.
				time.Sleep(2 * time.Minute)
				return errors.New("late failure")
			}
			close(healthy)
			<-ctx.Done()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		<-healthy
		synctest.Wait()
		// Runs at 0; failures wait 1, 2, 4, 4 (capped), 4 s; the sixth run
		// lasts 2 min and is followed by 1 s again.
		want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second,
			15*time.Second + 2*time.Minute + time.Second}
		mu.Lock()
		got := starts
		mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("starts at %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("start %d at %v, want %v (all: %v)", i, got[i], want[i], got)
			}
		}
		st := s.Status()
		if len(st) != 1 || st[0].State != StateRunning || st[0].Restarts != 6 || st[0].LastError != "late failure" {
			t.Fatalf("status %+v, want running after 6 restarts, last error 'late failure'", st)
		}
		if got := value(s.restarts.WithLabelValues("flaky", "error")); got != 6 {
			t.Errorf("restarts{reason=error}: got %v, want 6", got)
		}
		if got := value(s.up.WithLabelValues("flaky")); got != 1 {
			t.Errorf("up: got %v, want 1", got)
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := value(s.up.WithLabelValues("flaky")); got != 0 {
			t.Errorf("up after stop: got %v, want 0", got)
		}
		if st := s.Status(); st[0].State != StateStopped {
			t.Errorf("state after stop: %q, want stopped", st[0].State)
		}
	})
}

func TestPanicAndEarlyReturnAreFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{MinBackoff: time.Second}, nil, prometheus.NewRegistry())
		panicked, exited := 0, 0
		_ = s.Go("panicky", func(ctx context.Context) error {
			panicked++
			if panicked == 1 {
				panic("kaboom")
			}
			<-ctx.Done()
			return nil
		})
		_ = s.Go("quitter", func(ctx context.Context) error {
			exited++
			if exited == 1 {
				return nil // returned while not stopped
			}
			<-ctx.Done()
			return nil
		})
		synctest.Wait()
		// Both failed once and wait for their restart.
		st := s.Status()
		if st[0].State != StateBackoff || st[0].LastError != "panic: kaboom" || st[0].Restarts != 1 {
			t.Errorf("panicky: %+v, want backoff after panic: kaboom", st[0])
		}
		if st[1].State != StateBackoff || st[1].LastError != "returned before it was stopped" {
			t.Errorf("quitter: %+v, want backoff after an early return", st[1])
		}
		if got := value(s.restarts.WithLabelValues("panicky", "panic")); got != 1 {
			t.Errorf("restarts{panicky,panic}: got %v, want 1", got)
		}
		if got := value(s.restarts.WithLabelValues("quitter", "exit")); got != 1 {
			t.Errorf("restarts{quitter,exit}: got %v, want 1", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		for _, st := range s.Status() {
			if st.State != StateRunning {
				t.Errorf("%s: %s after the backoff, want running", st.Name, st.State)
			}
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStopInReverseOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{}, nil, nil)
		var mu sync.Mutex
		var order []string
		for _, name := range []string{"a", "b", "c"} {
			_ = s.Go(name, func(ctx context.Context) error {
				<-ctx.Done()
				// Each takes a while to stop: the next must not be
				// cancelled before it returned.
				time.Sleep(time.Second)
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return nil
			})
		}
		synctest.Wait()
		start := time.Now()
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(order, ","); got != "c,b,a" {
			t.Fatalf("stopped in order %s, want c,b,a", got)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("stop took %v, want 3s (one at a time)", d)
		}
		if err := s.Go("late", func(ctx context.Context) error { return nil }); !errors.Is(err, ErrStopped) {
			t.Errorf("Go after Stop: %v, want ErrStopped", err)
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestStopDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{StopTimeout: 5 * time.Second}, nil, nil)
		release := make(chan struct{})
		defer close(release)
		stopped := make(chan string, 2)
		_ = s.Go("polite", func(ctx context.Context) error {
			<-ctx.Done()
			stopped <- "polite"
			return nil
		})
		_ = s.Go("stubborn", func(ctx context.Context) error {
			<-release // ignores its context
			return nil
		})
		synctest.Wait()
		start := time.Now()
		err := s.Stop(context.Background())
		if err == nil || !strings.Contains(err.Error(), `"stubborn" did not return`) {
			t.Fatalf("Stop: %v, want an error naming stubborn", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("Stop returned after %v, want the 5s deadline", d)
		}
		// Past the deadline the others are cancelled at once.
		if got := <-stopped; got != "polite" {
			t.Fatal(got)
		}
		if err := s.Go("dup", func(context.Context) error { return nil }); !errors.Is(err, ErrStopped) {
			t.Errorf("Go after Stop: %v", err)
		}
	})
}

func TestDuplicateName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{}, nil, nil)
		run := func(ctx context.Context) error { <-ctx.Done(); return nil }
		if err := s.Go("x", run); err != nil {
			t.Fatal(err)
		}
		if err := s.Go("x", run); err == nil {
			t.Error("a second service named x: want an error")
		}
		_ = s.Stop(context.Background())
	})
}

// value reads a counter's or gauge's current value.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
