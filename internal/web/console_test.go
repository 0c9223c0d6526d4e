package web

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestConsoleServing: the embedded console build (console/, committed into
// internal/web/console): index.html for every non-API path, revalidated and
// under a same-origin CSP; its content-named assets with their content types
// and a year of caching; a missing asset is a 404, not the page; ETags
// answer 304.
func TestConsoleServing(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{}, nil)

	var index []byte
	for _, path := range []string{"/", "/index.html", "/channels", "/rpc", "/some/deep/route", "/assets/../lockdown"} {
		r := e.do(t, "GET", path, "", "")
		if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: got %d %q, want 200 text/html", path, r.status, r.header.Get("Content-Type"))
		}
		if got := r.header.Get("Cache-Control"); got != "no-cache" {
			t.Fatalf("GET %s: Cache-Control %q, want no-cache", path, got)
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self' ws://"+e.addr+" wss://"+e.addr+";") {
			t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("ETag") == "" {
			t.Fatalf("GET %s: headers %v", path, r.header)
		}
		if index != nil && !bytes.Equal(r.body, index) {
			t.Fatalf("GET %s: another body than /", path)
		}
		index = r.body
	}
	if !bytes.Contains(index, []byte("<title>Junction</title>")) {
		t.Fatalf("index.html: %.200s", index)
	}

	assets := regexp.MustCompile(`/assets/app-[0-9a-f]{12}\.(js|css)`).FindAllSubmatch(index, -1)
	if len(assets) != 2 {
		t.Fatalf("index.html names %d assets, want the script and the stylesheet: %s", len(assets), index)
	}
	types := map[string]string{"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
	for _, m := range assets {
		path, ext := string(m[0]), string(m[1])
		r := e.do(t, "GET", path, "", "")
		if r.status != 200 || r.header.Get("Content-Type") != types[ext] {
			t.Fatalf("GET %s: got %d %q, want 200 %q", path, r.status, r.header.Get("Content-Type"), types[ext])
		}
		if got := r.header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Fatalf("GET %s: Cache-Control %q", path, got)
		}
		want, err := consoleFS.ReadFile("console" + path)
		if err != nil || !bytes.Equal(r.body, want) || len(want) == 0 {
			t.Fatalf("GET %s: %d bytes, want the embedded file's %d (%v)", path, len(r.body), len(want), err)
		}
		tag := r.header.Get("ETag")
		if r := e.do(t, "GET", path, "", "", "If-None-Match", tag); r.status != 304 || len(r.body) != 0 {
			t.Fatalf("GET %s If-None-Match %s: got %d, %d bytes, want 304", path, tag, r.status, len(r.body))
		}
	}

	// A Host that could end the directive adds nothing to it.
	for host, want := range map[string]string{"127.0.0.1:7700": " ws://127.0.0.1:7700 wss://127.0.0.1:7700", "[::1]:80": " ws://[::1]:80 wss://[::1]:80",
		"junction.example": " ws://junction.example wss://junction.example", "a; script-src *": "", "a b": "", "": ""} {
		if got := consoleConnectSrc(host); got != want {
			t.Errorf("consoleConnectSrc(%q) = %q, want %q", host, got, want)
		}
	}

	expect(t, "a missing asset", e.do(t, "GET", "/assets/app-000000000000.js", "", ""), 404, protocol.CodeNotFound)
	expect(t, "a missing asset's directory", e.do(t, "GET", "/assets/", "", ""), 404, protocol.CodeNotFound)
	expect(t, "DELETE on the console", e.do(t, "DELETE", "/channels", "", ""), 405, protocol.CodeBadRequest)
}
