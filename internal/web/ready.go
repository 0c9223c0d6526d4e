package web

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// ReadyPart is one dependency behind a ReadyCheck: the database, a Redis
// shard, the node lease.
type ReadyPart struct {
	// Name names the dependency in /readyz's "dependencies" ("database",
	// "redis shard 0", "node lease"); unique in the server.
	Name string
	// Addr, when set, is where the dependency is (host:port, never a
	// credential).
	Addr  string
	Check func(ctx context.Context) error
}

// dependencyStatus is one member of /readyz's "dependencies".
type dependencyStatus struct {
	// Check is the member of "checks" the dependency belongs to.
	Check  string `json:"check"`
	Status string `json:"status"` // "ok" or "unavailable"
	Addr   string `json:"addr,omitempty"`
	// LatencyMs is how long this check took, in milliseconds.
	LatencyMs float64 `json:"latency_ms"`
	// Error is this check's failure.
	Error string `json:"error,omitempty"`
	// LastError and LastErrorAt are the latest failure this server saw,
	// kept after the dependency recovers.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// readiness remembers the dependencies' last errors between checks.
type readiness struct {
	mu   sync.Mutex             // a leaf
	last map[string]lastFailure // guarded by mu: by dependency name
}

type lastFailure struct {
	err string
	at  time.Time
}

// readiness runs every check (the parts of all of them at once) and returns
// /readyz's status and body: "status", "checks" (name → ok, unavailable or
// draining, as before), "dependencies" (name → dependencyStatus) and, when
// set, "details".
func (s *Server) readiness(ctx context.Context) (int, map[string]any) {
	type job struct {
		check string
		part  ReadyPart
		res   dependencyStatus
	}
	var jobs []*job
	for _, c := range s.deps.Ready {
		parts := c.Parts
		if parts == nil {
			parts = []ReadyPart{{Name: c.Name, Check: c.Check}}
		}
		for _, p := range parts {
			jobs = append(jobs, &job{check: c.Name, part: p})
		}
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			start := time.Now()
			err := j.part.Check(ctx)
			j.res = dependencyStatus{Check: j.check, Status: "ok", Addr: j.part.Addr,
				LatencyMs: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				j.res.Status, j.res.Error = "unavailable", err.Error()
			}
		})
	}
	wg.Wait()

	checks := map[string]string{}
	status := http.StatusOK
	if s.deps.Hub.Draining() {
		checks["hub"] = "draining"
		status = http.StatusServiceUnavailable
	} else {
		checks["hub"] = "ok"
	}
	deps := make(map[string]dependencyStatus, len(jobs))
	now := time.Now().UTC()
	s.ready.mu.Lock()
	if s.ready.last == nil {
		s.ready.last = map[string]lastFailure{}
	}
	for _, j := range jobs {
		if _, seen := checks[j.check]; !seen {
			checks[j.check] = "ok"
		}
		if j.res.Error != "" {
			s.log.Warn("readiness check failed", "check", j.check, "dependency", j.part.Name, "err", j.res.Error)
			checks[j.check] = "unavailable"
			status = http.StatusServiceUnavailable
			s.ready.last[j.part.Name] = lastFailure{err: j.res.Error, at: now}
		}
		if lf, ok := s.ready.last[j.part.Name]; ok {
			at := lf.at
			j.res.LastError, j.res.LastErrorAt = lf.err, &at
		}
		deps[j.part.Name] = j.res
	}
	s.ready.mu.Unlock()

	word := "ready"
	if status != http.StatusOK {
		word = "not ready"
	}
	body := map[string]any{"status": word, "checks": checks, "dependencies": deps}
	if len(s.deps.ReadyDetails) > 0 {
		details := map[string]any{}
		for _, d := range s.deps.ReadyDetails {
			details[d.Name] = d.Detail()
		}
		body["details"] = details
	}
	return status, body
}
