package web

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// parseHead parses a WebSocket handshake's request head, b, which ends with
// its blank line, when it is in the plain shape clients send: "GET
// /origin-form HTTP/1.1", CRLF line ends, one Host header, header names
// that are tokens, values of visible ASCII, spaces and tabs, and none of
// Content-Length, Transfer-Encoding, Pragma or "Connection: close". It
// returns the request http.ReadRequest would return for b, or nil for
// anything else, which http.ReadRequest then parses (or refuses) itself;
// FuzzParseHead checks the two agree. It exists because http.ReadRequest
// was ~9 % of the server's CPU per WebSocket connect.
func parseHead(b []byte) *http.Request {
	head := string(b) // one allocation: the values are substrings of it
	line, rest, ok := strings.Cut(head, "\r\n")
	if !ok {
		return nil
	}
	uri, ok := strings.CutPrefix(line, "GET ")
	if !ok {
		return nil
	}
	uri, ok = strings.CutSuffix(uri, " HTTP/1.1")
	if !ok || len(uri) == 0 || uri[0] != '/' {
		return nil
	}
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c >= 0x7f {
			return nil
		}
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil
	}
	lines := strings.Count(rest, "\r\n")
	h := make(http.Header, lines)
	vals := make([]string, 0, lines) // one backing array for single values
	var host string
	hosts := 0
	for {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return nil
		}
		if len(line) == 0 {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil
		}
		name, value := line[:colon], trimSpaceTab(line[colon+1:])
		for i := 0; i < len(name); i++ {
			if !isTokenByte(name[i]) {
				return nil
			}
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < ' ' && c != '\t') || c >= 0x7f {
				return nil
			}
		}
		key := headerKey(name)
		switch key {
		case "Host":
			hosts++
			host = value
			continue
		case "Content-Length", "Transfer-Encoding", "Pragma":
			return nil
		case "Connection":
			if hasCloseToken(value) {
				return nil
			}
		}
		if prev, dup := h[key]; dup {
			h[key] = append(prev, value)
			continue
		}
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if len(rest) != 0 || hosts != 1 || !plainHost(host) {
		return nil
	}
	return &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: uri,
	}
}

// headRefusal refuses what http.ReadRequest accepts but http.Server does not
// serve, with the reason http.Server has (its readRequest checks): a
// missing or malformed Host header (ReadRequest itself refuses two), a
// header name that is not a token (notably one with whitespace before its
// colon, "Host : x", which net/textproto keeps for compatibility,
// go.dev/issue/34540, and RFC 9112 §5.1 requires a 400 for); "" means
// served (net/textproto already refuses control bytes in values). req is an origin-form request
// from http.ReadRequest, which moved Host to req.Host. parseHead's heads
// pass all of it by construction.
func headRefusal(req *http.Request) string {
	switch {
	case req.Host == "":
		return "missing required Host header"
	case !validHostHeader(req.Host):
		return "malformed Host header"
	}
	for name := range req.Header {
		if name == "" {
			return "invalid header name"
		}
		for i := 0; i < len(name); i++ {
			if !isTokenByte(name[i]) {
				return "invalid header name"
			}
		}
	}
	return ""
}

// validHostHeader reports whether h has only the bytes net/http allows in
// a Host header (httpguts.ValidHostHeader): those of a host name, an IP
// literal with zone and a port, and sub-delims: no space, control,
// non-ASCII byte, quote or any of #/<>?@\^`{|}.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!$%&'()*+,-.:;=[]_~", rune(c)) {
			return false
		}
	}
	return true
}

// trimSpaceTab trims spaces and tabs at both ends, as textproto does.
func trimSpaceTab(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// isTokenByte reports whether c may appear in an HTTP token (RFC 9110).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// plainHost reports whether a Host value is a name or address with an
// optional port: letters, digits and ".-:[]_" only (anything else goes to
// net/http, which has its own rules).
func plainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// hasCloseToken reports whether a Connection value names "close" in any
// case, even as part of a longer word (such heads go to net/http).
func hasCloseToken(v string) bool {
	for i := 0; i+5 <= len(v); i++ {
		if (v[i]|0x20) == 'c' && strings.EqualFold(v[i:i+5], "close") {
			return true
		}
	}
	return false
}

// commonKeys maps the lower-case names of the headers a handshake usually
// has to their canonical forms, so that those are not allocated per request.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Host", "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Authorization", "Origin", "User-Agent",
		"Accept", "Accept-Encoding", "Accept-Language", "Cache-Control", "Cookie", "X-Forwarded-For",
		"X-Forwarded-Proto", "Content-Length", "Transfer-Encoding", "Pragma"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// headerKey returns the canonical form of a header name made of token
// bytes.
func headerKey(name string) string {
	var buf [32]byte
	if len(name) <= len(buf) {
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if k, ok := commonKeys[string(buf[:len(name)])]; ok { // no allocation for the lookup
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}
