package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// consoleFS is the web console as built by console/ (npm run build there):
// index.html and assets/ whose names carry a hash of their content. The
// build is committed, so the binary needs no Node.
//
//go:embed console
var consoleFS embed.FS

// consoleCSP keeps the console to its own origin: scripts, styles and
// connections (fetch and the WebSocket) go nowhere else. %s is the
// request's own ws:// and wss:// origin (consoleConnectSrc): browsers that
// predate CSP 3 do not count a WebSocket to the page's host as 'self'.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'%s; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleConnectSrc returns " ws://HOST wss://HOST" for the request's Host
// when it is a plain host[:port] (letters, digits, dots, dashes, colons and
// brackets: nothing that could end the directive), "" otherwise.
func consoleConnectSrc(host string) string {
	if host == "" || len(host) > 255 {
		return ""
	}
	for _, c := range []byte(host) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0
		if !ok {
			return ""
		}
	}
	return " ws://" + host + " wss://" + host
}

// serveConsole serves the embedded console for every path the API does not
// claim. Files under assets/ are named by their content: they may be cached
// for a year; a missing one is a 404 (not the page, which a browser would
// then run as a script). Any other path gets index.html, revalidated on
// each load, so that the console's client-side routes (/channels, /rpc...)
// work on reload.
func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONError(w, http.StatusMethodNotAllowed, protocol.Errorf(protocol.CodeBadRequest, "method %s not allowed", r.Method))
		return
	}
	name := path.Clean("/" + r.URL.Path)[1:]
	asset := name == "assets" || strings.HasPrefix(name, "assets/")
	if !asset {
		name = "index.html"
	}
	f, err := s.console.Open(name)
	if err != nil {
		if asset {
			writeError(w, protocol.Errorf(protocol.CodeNotFound, "no such console file: %s", name))
		} else {
			writeError(w, protocol.Errorf(protocol.CodeNotFound, "console not available"))
		}
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "not found"))
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if asset {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", fmt.Sprintf(consoleCSP, consoleConnectSrc(r.Host)))
		h.Set("X-Frame-Options", "DENY")
	}
	// ServeContent sets Content-Type from the extension (text/html,
	// text/javascript, text/css; charset=utf-8) and answers ranges and
	// If-None-Match; an embedded file has no modification time.
	if tag, ok := consoleETags()[name]; ok {
		h.Set("ETag", tag)
	}
	http.ServeContent(w, r, name, time.Time{}, f.(io.ReadSeeker))
}

// consoleETags are the embedded files' entity tags, by name: a hash of
// their content, computed once (the files are a few, and small).
var consoleETags = sync.OnceValue(func() map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(consoleFS, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := consoleFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[strings.TrimPrefix(p, "console/")] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
})
