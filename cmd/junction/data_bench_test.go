package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Storage benchmarks through the real server: HTTP over loopback, JSON,
// the store on SQLite (a file in a temp dir) and PostgreSQL (a throwaway
// local server with fsync off, see pgtest). Results are in BENCHMARKS.md,
// "Storage".
//
//	go test -run '^$' -bench 'Messages|UpdatesSince' -benchtime 3s ./cmd/junction

// benchServer starts the server for a benchmark on backend.
func benchServer(b *testing.B, backend string) *Main {
	b.Helper()
	cfg := &Config{Addr: "127.0.0.1:0", Data: b.TempDir(), LogLevel: "error"}
	if backend == "postgres" {
		cfg.Database = postgresDSN(b)
	}
	cfg.Hub.RequestsPerSecond = -1
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	m := NewMain(cfg, io.Discard, io.Discard)
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func messageBatch(n int, body []byte) map[string]any {
	msgs := make([]map[string]string, n)
	for i := range msgs {
		msgs[i] = map[string]string{"body": b64(body)}
	}
	return map[string]any{"messages": msgs}
}

// BenchmarkMessagesAppend measures messages stored per second through
// POST /api/v1/sessions/{id}/messages, one request at a time ("serial") and
// from 8 concurrent clients on their own sessions ("parallel"), with
// 256-byte encrypted bodies.
func BenchmarkMessagesAppend(b *testing.B) {
	body := make([]byte, 256)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			m := benchServer(b, backend)
			tok := login(b, m, newKey(b), "phone").AccessToken
			newSession := func() string {
				var s protocol.Session
				apiJSON(b, m, tok, "POST", "/api/v1/sessions", nil, 201, &s)
				return s.ID
			}
			for _, batch := range []int{1, 100} {
				req := messageBatch(batch, body)
				b.Run(fmt.Sprintf("batch=%d/serial", batch), func(b *testing.B) {
					path := "/api/v1/sessions/" + newSession() + "/messages"
					b.ResetTimer()
					start := time.Now()
					for range b.N {
						if status, raw := apiCall(b, m, tok, "POST", path, req); status != 201 {
							b.Fatalf("status %d: %s", status, raw)
						}
					}
					b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "msgs/s")
				})
				b.Run(fmt.Sprintf("batch=%d/parallel", batch), func(b *testing.B) {
					var failed atomic.Value
					b.SetParallelism(4) // 4 × GOMAXPROCS clients, each on its own session
					start := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						path := "/api/v1/sessions/" + newSession() + "/messages"
						for pb.Next() {
							if status, raw := apiCall(b, m, tok, "POST", path, req); status != 201 {
								failed.Store(fmt.Sprintf("status %d: %s", status, raw))
								return
							}
						}
					})
					if f := failed.Load(); f != nil {
						b.Fatal(f)
					}
					b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "msgs/s")
				})
			}
		})
	}
}

// BenchmarkUpdatesSince measures GET /api/v1/updates?since=N returning the
// last 100 of an account's 2,000 updates (what a client that was away
// briefly asks on reconnect).
func BenchmarkUpdatesSince(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			m := benchServer(b, backend)
			tok := login(b, m, newKey(b), "phone").AccessToken
			var s protocol.Session
			apiJSON(b, m, tok, "POST", "/api/v1/sessions", nil, 201, &s)
			req := messageBatch(100, make([]byte, 256))
			for range 20 {
				apiJSON(b, m, tok, "POST", "/api/v1/sessions/"+s.ID+"/messages", req, 201, nil)
			}
			var me protocol.Me
			apiJSON(b, m, tok, "GET", "/api/v1/auth/me", nil, 200, &me)
			path := fmt.Sprint("/api/v1/updates?since=", me.UpdateSeq-100)
			b.ResetTimer()
			for range b.N {
				if status, raw := apiCall(b, m, tok, "GET", path, nil); status != 200 {
					b.Fatalf("status %d: %s", status, raw)
				}
			}
		})
	}
}
