//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/bench"
)

// TestBenchAgainstReference runs 'junction bench' scenarios of issue 11's
// table against the reference server, as scripts/bench-ab-all.sh does, so
// that the yardstick keeps speaking the protocol the bench measures:
// every publication delivered exactly once, every connect welcomed and
// subscribed, no error.
func TestBenchAgainstReference(t *testing.T) {
	data := t.TempDir()
	s := &server{addr: "127.0.0.1:0", data: data, writers: 2}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fanout over REST", []string{"--scenario", "fanout", "--conns", "50", "--publish-via", "rest", "--publishers", "4", "--size", "100"}},
		{"fanout over WebSocket", []string{"--scenario", "fanout", "--conns", "50", "--size", "100"}},
		{"connect and subscribe", []string{"--scenario", "connect", "--conns", "4", "--subscribe"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--url", "ws://" + s.Addr() + "/ws", "--data", data, "--duration", "500ms", "--json"}, tc.args...)
			cfg, err := bench.ParseFlags(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Minter = minter
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := bench.Run(ctx, cfg, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			var res bench.Result
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("result %q: %v", out.Bytes(), err)
			}
			if res.Errors != 0 || res.DialErrors != 0 || res.ClosedEarly != 0 {
				t.Fatalf("got %d errors, %d dial errors, %d closed early (first: %s), want none", res.Errors, res.DialErrors, res.ClosedEarly, res.FirstError)
			}
			if f := res.Fanout; f != nil {
				if f.Publications == 0 || f.Expected == 0 {
					t.Fatalf("got %d publications, %d deliveries expected, want some", f.Publications, f.Expected)
				}
				if f.Lost != 0 || f.Deliveries != f.Expected || f.Duplicates != 0 || f.Gaps != 0 {
					t.Fatalf("got %d deliveries of %d expected (%d lost, %d duplicates, %d gaps), want each exactly once",
						f.Deliveries, f.Expected, f.Lost, f.Duplicates, f.Gaps)
				}
			}
			if c := res.Connect; c != nil && c.Connects == 0 {
				t.Fatal("got 0 connects, want some")
			}
		})
	}
}

// minter is cmd/junction's bench token minter: the data directory's key,
// as the reference server loaded it.
func minter(data, alg string) (func(bench.Claims) (string, error), error) {
	tokens, _, err := auth.LoadTokens(data, auth.TokenConfig{Alg: alg})
	if err != nil {
		return nil, err
	}
	return func(c bench.Claims) (string, error) {
		tok, _, err := tokens.Issue(auth.Claims{UserID: c.User, DeviceID: c.Device, Kind: c.Kind, Scopes: c.Scopes}, time.Hour)
		return tok, err
	}, nil
}
