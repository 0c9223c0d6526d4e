package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// fakeTB records how DB ended the test.
type fakeTB struct {
	ctx     context.Context
	skipped string
	fatal   string
}

type stop struct{}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Context() context.Context  { return f.ctx }
func (f *fakeTB) Skip(args ...any)          { f.skipped = fmt.Sprint(args...); panic(stop{}) }
func (f *fakeTB) Fatal(args ...any)         { f.fatal = fmt.Sprint(args...); panic(stop{}) }
func (f *fakeTB) Fatalf(s string, a ...any) { f.fatal = fmt.Sprintf(s, a...); panic(stop{}) }

func runDB(sh *Shared, tb *fakeTB) (dsn string) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stop); !ok {
				panic(r)
			}
		}
	}()
	return sh.DB(tb)
}

func TestMissingBinaries(t *testing.T) {
	cases := []struct {
		require  string
		wantSkip bool
	}{
		{"", true},
		{"0", true},
		{"1", false},
	}
	for _, tc := range cases {
		t.Run("require="+tc.require, func(t *testing.T) {
			t.Setenv(EnvRequire, tc.require)
			sh := &Shared{}
			sh.once.Do(func() { sh.err = ErrNotInstalled }) // as if FindBin failed
			tb := &fakeTB{ctx: t.Context()}
			runDB(sh, tb)
			if gotSkip := tb.skipped != ""; gotSkip != tc.wantSkip || (tb.fatal == "") == !tc.wantSkip {
				t.Fatalf("skipped %q, fatal %q; want skip %v", tb.skipped, tb.fatal, tc.wantSkip)
			}
			if msg := tb.skipped + tb.fatal; !strings.Contains(msg, "test-deps.sh") {
				t.Fatalf("message %q does not say how to install PostgreSQL", msg)
			}
		})
	}
}

func TestStartStop(t *testing.T) {
	if _, err := FindBin(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(err)
		}
		t.Skip("SKIPPING: ", err)
	}
	srv, err := Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := srv.CreateDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dsn, fmt.Sprintf("127.0.0.1:%d/", srv.Port())) {
		t.Fatalf("DSN %q is not on 127.0.0.1:%d", dsn, srv.Port())
	}
	if err := srv.ping(t.Context(), strings.TrimSuffix(dsn[strings.LastIndex(dsn, "/")+1:], "?sslmode=disable")); err != nil {
		t.Fatalf("ping new database: %v", err)
	}
	dir := srv.dir
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s still exists after Stop (stat err %v)", dir, err)
	}
	select {
	case <-srv.done:
	default:
		t.Fatal("postgres still running after Stop")
	}
}
