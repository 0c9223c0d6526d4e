package schedule

import "github.com/prometheus/client_golang/prometheus"

// metrics are the scheduler's collectors. No label names a job: job names
// are the operator's, unbounded for a metrics backend.
type metrics struct {
	jobs    prometheus.Gauge
	runs    *prometheus.CounterVec
	skipped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "junction_schedule_jobs",
			Help: "Scheduled jobs known to this node (configured and created through the API).",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_schedule_runs_total",
			Help: "Runs of scheduled jobs on this node by trigger (schedule, manual) and outcome (ok, error).",
		}, []string{"trigger", "outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_schedule_ticks_skipped_total",
			Help: "Ticks this node did not run, by reason: lease_taken (another node runs it), busy (the job's previous run is still running), lease_error.",
		}, []string{"reason"}),
	}
	for _, t := range []string{triggerSchedule, triggerManual} {
		for _, o := range []string{"ok", "error"} {
			m.runs.WithLabelValues(t, o)
		}
	}
	for _, r := range []string{"lease_taken", "busy", "lease_error"} {
		m.skipped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.runs, m.skipped)
	}
	return m
}
