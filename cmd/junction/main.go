// Command junction is the Junction real-time gateway: one binary, one port.
//
//	junction serve    run the server (see junction serve --help)
//	junction token    mint an access token with a data directory's key
//	junction keygen   create the EdDSA signing key in a data directory
//	junction migrate  apply database migrations and exit
//	junction bench    load generator speaking the protocol (loopback only)
//	junction contract print the AsyncAPI or OpenAPI document the server serves
//	junction health   check a running server's /healthz (container health check)
//	junction app      manage apps and their API keys on a running server
//	junction version  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/junctionhq/junction/internal/bench"
	"github.com/junctionhq/junction/internal/web"
)

// version is set at build time with -ldflags "-X main.version=..." (see
// version.go for the go install case).
var version = devVersion

func main() {
	web.Version = version
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], environ, stdout, stderr)
	case "token":
		err = runToken(args[1:], stdout, stderr)
	case "keygen":
		err = runKeygen(args[1:], stdout, stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], environ, stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "contract":
		err = runContract(ctx, args[1:], stdout, stderr)
	case "health":
		err = runHealth(ctx, args[1:], environ, stdout, stderr)
	case "app":
		err = runApp(ctx, args[1:], environ, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "junction", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "junction: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "junction:", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Junction: a self-hosted real-time gateway.

Usage:
  junction serve [flags]     run the server on its embedded defaults (127.0.0.1:7700, ./data)
  junction token [flags]     mint an access token signed with a data directory's key
  junction keygen [flags]    create the EdDSA signing key in a data directory
  junction migrate [flags]   apply database migrations and exit (--database DSN, --data DIR)
  junction bench [flags]     load generator: connect, idle, rpc and fanout scenarios (loopback only)
  junction contract asyncapi|openapi
                             print the wire contract the server serves (JSON), without a running server
  junction health [--url U]  exit 0 if a running server's /healthz answers 200 (container health check)
  junction app SUBCOMMAND    apps and their API keys on a running server: create, list, show, rotate-key, revoke-key, delete
  junction version           print the version

Run 'junction COMMAND --help' for a command's flags.
`)
}

func runServe(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("serve", args, environ, stderr)
	if err != nil {
		return err
	}
	m := NewMain(cfg, stdout, stderr)
	m.ConfigSource = func() (*Config, error) { return loadConfig("serve", args, environ, io.Discard) }
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the reloadable settings (reload.go).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := m.Open(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Junction %s listening on %s (WebSocket %s/ws)\n", version, m.URL(), m.WSURL())
	fmt.Fprintf(stdout, "Mint a token: junction token --data %s --user alice --device laptop --kind browser --scope read,write\n", cfg.Data)
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-m.ServeErr():
			m.Logger.Error("http server stopped", "err", err)
			running = false
		case <-hup:
			m.Logger.Info("SIGHUP: reloading the configuration")
			_ = m.Reload() // logged; a refused configuration keeps the running one
		}
	}
	stop()
	m.Logger.Info("shutting down")
	return m.Close(context.Background())
}

// runBench runs the load generator (internal/bench) with its flags and the
// data directory's key for --data.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Flag errors as the other commands give them: one line and a hint,
	// the usage only for --help (the flag package's own errors name "flag"; bench's
	// checks after parsing already say what to pass).
	cfg, err := bench.ParseFlags(args, io.Discard)
	if errors.Is(err, flag.ErrHelp) {
		_, err = bench.ParseFlags(args, stderr)
		return err
	}
	if err != nil && strings.Contains(err.Error(), "flag") {
		return fmt.Errorf("%v; run 'junction bench --help' for the list of flags", err)
	}
	if err != nil {
		return err
	}
	cfg.Minter = benchMinter
	return bench.Run(ctx, cfg, stdout, stderr)
}
