package redistest_test

import (
	"context"
	"testing"

	"github.com/junctionhq/junction/internal/redistest"
)

// TestRestartPersistence checks what each persistence choice keeps across a
// kill and restart on the same port.
func TestRestartPersistence(t *testing.T) {
	tests := []struct {
		name     string
		aof      bool
		keepData bool
		want     string // GET's first reply line after the restart
	}{
		{"aof kept", true, true, "$1"},
		{"aof data lost", true, false, "$-1"},
		{"no persistence", false, true, "$-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.New(t, redistest.Options{AOF: tt.aof})
			if got, err := s.Do("SET", "k", "v"); err != nil || got != "+OK" {
				t.Fatalf("SET: got %q, %v", got, err)
			}
			port := s.Port()
			if err := s.Restart(context.Background(), tt.keepData); err != nil {
				t.Fatal(err)
			}
			if s.Port() != port {
				t.Fatalf("got port %d after restart, want %d", s.Port(), port)
			}
			if got, err := s.Do("GET", "k"); err != nil || got != tt.want {
				t.Fatalf("GET after restart: got %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestStopTwiceAndKill(t *testing.T) {
	s := redistest.New(t, redistest.Options{})
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING after Kill: got nil, want an error")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
