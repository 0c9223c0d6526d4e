package main

import (
	"context"
	"log/slog"
	"sort"
	"time"
)

// defaultAuthLogInterval is how often failed authentications are summed up
// in the log.
const defaultAuthLogInterval = time.Minute

// logAuthFailures writes one WARN line per interval in which
// authentications failed, with the count by reason, and a last one for the
// final partial interval when ctx ends. One line a minute at most, however
// many failures: a client hammering the server with bad tokens cannot
// flood the log, and an operator still sees that it happens. The counts
// are junction_auth_failures_total's, read from the registry, so every
// place that refuses a credential is covered.
func (m *Main) logAuthFailures(ctx context.Context, every time.Duration) {
	prev := m.authFailureCounts()
	report := func() {
		cur := m.authFailureCounts()
		var total uint64
		var attrs []any
		reasons := make([]string, 0, len(cur))
		for r := range cur {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			if d := cur[r] - prev[r]; d > 0 {
				total += d
				attrs = append(attrs, slog.Uint64(r, d))
			}
		}
		prev = cur
		if total > 0 {
			m.Logger.Warn("authentication failures", "count", total, "in", every.String(), slog.Group("by_reason", attrs...))
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			report()
			return
		case <-t.C:
			report()
		}
	}
}

// authFailureCounts reads junction_auth_failures_total by reason.
func (m *Main) authFailureCounts() map[string]uint64 {
	out := map[string]uint64{}
	families, err := m.Registry.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		if f.GetName() != "junction_auth_failures_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = uint64(metric.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}
