//go:build linux

// Command refserver is the reference server of issue 11: the "ideal" design
// Junction's fan-out targets were set against (encode once, per-connection
// queue, two writer goroutines writing all that is queued in one writev,
// one epoll reader), speaking just enough of Junction's protocol for
// 'junction bench' to measure it exactly as it measures Junction, on the
// same machine, in the same run (scripts/bench-ab-all.sh, BENCHMARKS.md).
// It is a yardstick, not part of the product: nothing imports it.
//
//	refserver serve --addr 127.0.0.1:7700 --data DIR [--writers 2] [--log-level L] [--hub-requests-per-second N]
//
// Design, as lean as the description allows:
//   - Two acceptor goroutines do blocking accept4 and the handshake on the
//     blocking socket (request head, JWT verified with internal/auth and the
//     data directory's key, created as 'junction serve' creates it), then
//     write the 101 and the welcome in one write and hand the socket,
//     non-blocking, to the epoll. A REST publish is answered there too and
//     its keep-alive connection joins the epoll as well (rest.go, no
//     net/http); any other request (/healthz) goes to a net/http server.
//   - One epoll goroutine reads every socket (level-triggered, one read per
//     event into one shared buffer), answers channel.subscribe,
//     channel.publish, sys.ping and the REST publishes, writing an answer
//     itself when nothing is queued on the connection.
//   - A publication is encoded once, as a complete WebSocket frame, and
//     appended to its topic's pending list under the topic lock (which also
//     assigns its offset). After each pass over epoll_wait's events the
//     reader fans out what the pass published: the same frames appended to
//     each subscriber's queue, one lock per subscriber per batch.
//   - A connection whose queue went from empty to not empty joins the ready
//     list; the writer goroutines (--writers, 2 as in the issue) take
//     connections from it and write all that is queued on each in writev
//     calls of up to 1,024 frames, through unix.Syscall, yielding after each
//     take. A full socket parks the connection until epoll reports it
//     writable.
//
// Limits (what it leaves out of Junction's protocol): IPv4 only; the bearer
// token only in the Authorization header; no heartbeat, token expiry,
// history, recovery (a subscribe with since answers recovered false),
// presence, RPC, idempotency, rate limits, namespaces, metrics, compact
// protocol or binary frames (closed with 1003); fragmented messages close
// with 1002; REST bodies need a Content-Length; no write timeout: a
// consumer that stops reading is cut only when its queue (4,096 frames or
// 1 MiB, Junction's defaults) overflows, with 4108 when nothing is half
// written, else by shutting the socket down. Topics are never forgotten.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "refserver:", err)
		}
		os.Exit(2)
	}
}

// run parses the serve command line (the flags scripts/bench-ab-all.sh passes
// to Junction), serves until ctx ends, then closes.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		return errors.New("usage: refserver serve --addr HOST:PORT --data DIR [--writers N] [--log-level L] [--hub-requests-per-second N]")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7700", "listen address (IPv4 host:port)")
	data := fs.String("data", "./data", "data directory holding the token signing key (secret.key, created when missing)")
	writers := fs.Int("writers", 2, "writer goroutines (the issue's design: 2)")
	logLevel := fs.String("log-level", "info", "accepted for Junction's command line: debug, info, warn or error (the server logs only fatal errors)")
	// Accepted for Junction's command line; the reference has no rate limit.
	fs.Int("hub-requests-per-second", 0, "ignored: the reference server has no request rate limit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch *logLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	if *writers < 1 || *writers > 64 {
		return fmt.Errorf("--writers %d: want 1 to 64", *writers)
	}
	s := &server{addr: *addr, data: *data, writers: *writers}
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}
