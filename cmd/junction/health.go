package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealth is "junction health": GET /healthz of a running server, exit 0
// on 200 and 1 otherwise. It is the container image's HEALTHCHECK (the
// image is FROM scratch: no shell, no curl). The address is --url, else
// the server's own JUNCTION_ADDR with an unspecified host (0.0.0.0, ::)
// read as loopback, else the default 127.0.0.1:7700.
func runHealth(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET (default http://ADDR/healthz, ADDR from JUNCTION_ADDR or 127.0.0.1:7700)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlags(fs, "health", args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("health: unexpected argument %q; run 'junction health --help'", fs.Arg(0))
	}
	if *url == "" {
		*url = "http://" + healthAddr(envLookup(environ, "JUNCTION_ADDR")) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: GET %s: %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// healthAddr is the HOST:PORT to reach a server listening on addr.
func healthAddr(addr string) string {
	if addr == "" {
		return "127.0.0.1:7700"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
