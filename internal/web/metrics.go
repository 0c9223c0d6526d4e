package web

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/ws"
)

// metrics are the edge's Prometheus collectors. Labels are low-cardinality:
// routes are mux patterns, failure reasons a fixed set.
type metrics struct {
	httpSeconds  *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
}

// authFailureReasons are the values of junction_auth_failures_total's
// reason label.
var authFailureReasons = []string{
	auth.ReasonMissing, auth.ReasonMalformed, auth.ReasonExpired, auth.ReasonSignature,
	auth.ReasonInvalidClaims, auth.ReasonUnknownKey, auth.ReasonRevoked, auth.ReasonLockdown,
	auth.ReasonOrigin, auth.ReasonOther,
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "junction_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and status class.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_auth_failures_total",
			Help: "Refused requests by reason (missing, malformed, expired, signature, invalid_claims, unknown_key, revoked, lockdown, origin, other).",
		}, []string{"reason"}),
	}
	// Every reason is exported from the start, at zero, so that dashboards
	// and alerts see the series before the first failure.
	for _, reason := range authFailureReasons {
		m.authFailures.WithLabelValues(reason)
	}
	if reg != nil {
		reg.MustRegister(m.httpSeconds, m.authFailures)
	}
	return m
}

// statusWriter records the status written, and lets the WebSocket upgrade
// hijack the connection through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("web: response writer cannot hijack")
	}
	w.status = http.StatusSwitchingProtocols
	return hj.Hijack()
}

// HijackFD passes the front door's bare descriptor through (ws.FDHijacker).
func (w *statusWriter) HijackFD() (int, []byte, bool) {
	fh, ok := w.ResponseWriter.(ws.FDHijacker)
	if !ok {
		return -1, nil, false
	}
	fd, buffered, ok := fh.HijackFD()
	if ok {
		w.status = http.StatusSwitchingProtocols
	}
	return fd, buffered, ok
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func statusClass(code int) string {
	return strconv.Itoa(code/100) + "xx"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
