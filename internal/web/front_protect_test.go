package web

// The front door's defences: accept errors (out of descriptors and the
// like) back off and retry, doubling up to a second, and the backoff ends
// with the next accepted connection or at shutdown; a shutdown whose
// context ends before the handshakes and requests in flight returns an
// error that says so, and they still complete.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flakyListener is a real loopback listener whose Accept first returns the
// errors queued in errs, as accept(2) does when the process is out of
// descriptors.
type flakyListener struct {
	net.Listener
	errs chan error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
	}
	return l.Listener.Accept()
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", errno)}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "accept: i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// backoffWait is one backoff the accept loop asked for: its duration and
// the channel that ends it.
type backoffWait struct {
	d    time.Duration
	fire chan time.Time
}

// frontWithBackoffs returns a front door serving handler whose accept
// backoffs wait for the test (Front.after): each is sent on the returned
// channel.
func frontWithBackoffs(t *testing.T, handler http.Handler, log *slog.Logger) (*Front, chan backoffWait) {
	t.Helper()
	waits := make(chan backoffWait, 16)
	f := NewFront(handler, &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, log)
	f.after = func(d time.Duration) <-chan time.Time {
		w := backoffWait{d: d, fire: make(chan time.Time, 1)}
		waits <- w
		return w.fire
	}
	return f, waits
}

func nextWait(t *testing.T, waits chan backoffWait) backoffWait {
	t.Helper()
	select {
	case w := <-waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatalf("the accept loop asked for no backoff within 10s")
		return backoffWait{}
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok "+r.URL.Path) })

// TestFrontAcceptBackoff: each retryable accept error (EMFILE, ENFILE,
// ENOBUFS, ENOMEM, a timeout) waits, doubling from 5 ms up to 1 s, is
// logged, and the loop goes on accepting; an accepted connection resets the
// backoff; a shutdown during a backoff ends Serve at once with
// http.ErrServerClosed.
func TestFrontAcceptBackoff(t *testing.T) {
	var logs lockedBuffer
	f, waits := frontWithBackoffs(t, okHandler, slog.New(slog.NewTextHandler(&logs, nil)))
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &flakyListener{Listener: inner, errs: make(chan error, 16)}
	addr := inner.Addr().String()
	errs := []error{acceptErr(syscall.EMFILE), acceptErr(syscall.ENFILE), acceptErr(syscall.ENOBUFS), acceptErr(syscall.ENOMEM),
		timeoutErr{}, acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE), acceptErr(syscall.EMFILE)}
	for _, e := range errs {
		ln.errs <- e
	}
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()

	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, ms := range want {
		w := nextWait(t, waits)
		if w.d != ms*time.Millisecond {
			t.Fatalf("backoff %d (after %v): %v, want %v", i, errs[i], w.d, ms*time.Millisecond)
		}
		w.fire <- time.Now()
	}
	// The loop accepts again.
	if got := rawExchange(t, addr, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.Contains(got, "200 OK") || !strings.HasSuffix(got, "ok /a") {
		t.Fatalf("after the errors: got %q, want 200 ok /a", got)
	}
	// An accepted connection reset the backoff: the next error waits 5 ms.
	// The loop may already wait in accept(2), past the queued error: a
	// connection wakes it, and the error comes next. Or it took the error
	// first and waits out the backoff, the connection in the backlog. So the
	// connection is only made, not answered (that would deadlock in the
	// second case: this test fires the backoffs).
	ln.errs <- acceptErr(syscall.EMFILE)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	w := nextWait(t, waits)
	if w.d != 5*time.Millisecond {
		t.Fatalf("backoff after an accepted connection: %v, want 5ms", w.d)
	}
	// Shut down while that backoff waits (never fired): Serve ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return after Shutdown during a backoff")
	}
	if n := strings.Count(logs.String(), "accept failed; retrying"); n != len(want)+1 {
		t.Fatalf("%d accept failures logged, want %d:\n%s", n, len(want)+1, logs.String())
	}
	select {
	case w := <-waits:
		t.Fatalf("an extra backoff of %v", w.d)
	default:
	}
}

// TestFrontAcceptFatal: an accept error that is not a shortage (here
// EINVAL, or any error that is not a net.Error timeout) ends Serve with
// that error, without a backoff.
func TestFrontAcceptFatal(t *testing.T) {
	for _, fatal := range []error{acceptErr(syscall.EINVAL), errors.New("listener broken")} {
		t.Run(fatal.Error(), func(t *testing.T) {
			f, waits := frontWithBackoffs(t, okHandler, slog.New(slog.DiscardHandler))
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &flakyListener{Listener: inner, errs: make(chan error, 1)}
			ln.errs <- fatal
			served := make(chan error, 1)
			go func() { served <- f.Serve(ln) }()
			select {
			case err := <-served:
				if !errors.Is(err, fatal) {
					t.Fatalf("Serve returned %v, want %v", err, fatal)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Serve did not return after a fatal accept error")
			}
			select {
			case w := <-waits:
				t.Fatalf("a fatal accept error backed off %v", w.d)
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := f.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// TestFrontShutdownTimeout: Shutdown bounded by a context that ends while a
// WebSocket handshake (served by the front door) and an HTTP request
// (handed to the http.Server) are still running returns an error that
// wraps the context's and names the handshakes; both still complete and
// answer their clients; Serve then returns http.ErrServerClosed, and a
// second Shutdown returns nil.
func TestFrontShutdownTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan string, 2)
			release := make(chan struct{})
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- r.URL.Path
				<-release
				if r.URL.Path == "/ws" {
					http.Error(w, "refused after all", http.StatusForbidden)
					return
				}
				_, _ = io.WriteString(w, "done")
			})
			f := NewFront(handler, &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, slog.New(slog.DiscardHandler))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- f.Serve(ln) }()
			addr := ln.Addr().String()
			answers := make(chan string, 2)
			for _, req := range []string{
				"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
				"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			} {
				go func() { answers <- exchange(addr, req) }()
			}
			got := map[string]bool{}
			for range 2 {
				select {
				case p := <-entered:
					got[p] = true
				case <-time.After(10 * time.Second):
					t.Fatalf("handlers entered: %v, want /ws and /slow", got)
				}
			}
			if !got["/ws"] || !got["/slow"] {
				t.Fatalf("handlers entered: %v, want /ws and /slow", got)
			}

			ctx, cancel := tc.ctx()
			defer cancel()
			err = f.Shutdown(ctx)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "websocket handshakes still running") {
				t.Fatalf("Shutdown: %v, want an error wrapping %v that names the handshakes still running", err, tc.want)
			}
			if j, ok := err.(interface{ Unwrap() []error }); !ok || len(j.Unwrap()) != 2 {
				t.Fatalf("Shutdown: %v, want two errors (the HTTP server's and the handshakes')", err)
			}

			close(release)
			for range 2 {
				select {
				case a := <-answers:
					if !strings.HasPrefix(a, "HTTP/1.1 403") && !(strings.HasPrefix(a, "HTTP/1.1 200") && strings.HasSuffix(a, "done")) {
						t.Fatalf("answer after the shutdown timed out: %q, want the handler's (403 or 200 done)", a)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("a request in flight at the shutdown got no answer")
				}
			}
			select {
			case err := <-served:
				if !errors.Is(err, http.ErrServerClosed) {
					t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Serve did not return")
			}
			if err := f.Shutdown(context.Background()); err != nil {
				t.Fatalf("second Shutdown: %v", err)
			}
		})
	}
}

// exchange is rawExchange for another goroutine than the test's: an error
// is returned in the answer.
func exchange(addr, req string) string {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		return "write: " + err.Error()
	}
	b, err := io.ReadAll(nc)
	if err != nil {
		return string(b) + " read: " + err.Error()
	}
	return string(b)
}
