package auth

import (
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"unicode"

	"github.com/junctionhq/junction/protocol"
)

// Credential sources, the values of Credential.Source.
const (
	SourceHeader      = "header"      // Authorization: Bearer <credential>
	SourceSubprotocol = "subprotocol" // Sec-WebSocket-Protocol: junction.v1, junction.bearer.<credential>
	SourceQuery       = "query"       // ?token=<credential>, the least safe: URLs end up in logs
)

// Credential is a credential found in a request: an access token or an API
// key. Its String and LogValue redact the value.
type Credential struct {
	Value  string
	Source string
}

// String implements fmt.Stringer without revealing the value.
func (c Credential) String() string {
	return "credential(" + c.Source + ", redacted)"
}

// GoString implements fmt.GoStringer, so %#v redacts too.
func (c Credential) GoString() string { return c.String() }

// LogValue implements slog.LogValuer without revealing the value.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", c.Source), slog.String("value", "REDACTED"))
}

// CredentialFromRequest returns the request's credential, looking in order
// of preference at:
//
//  1. the Authorization header with the Bearer scheme (other schemes are
//     ignored, since a proxy may use them for itself);
//  2. the Sec-WebSocket-Protocol offers, where the credential is accepted
//     only as the pair "junction.v1, junction.bearer.<credential>" so that
//     the server can answer with junction.v1 without echoing the credential;
//  3. the "token" query parameter.
//
// It reports false when none holds a non-empty credential. It does not
// check the credential.
func CredentialFromRequest(r *http.Request) (Credential, bool) {
	if v, ok := bearer(r.Header.Get("Authorization")); ok {
		return Credential{Value: v, Source: SourceHeader}, true
	}
	if v, ok := subprotocolCredential(r); ok {
		return Credential{Value: v, Source: SourceSubprotocol}, true
	}
	if r.URL != nil {
		if v := strings.TrimSpace(r.URL.Query().Get("token")); v != "" {
			return Credential{Value: v, Source: SourceQuery}, true
		}
	}
	return Credential{}, false
}

// bearer parses an Authorization header value with the Bearer scheme
// (case-insensitive, RFC 6750).
func bearer(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	v := strings.TrimSpace(rest)
	if v == "" || strings.ContainsAny(v, " \t") {
		return "", false
	}
	return v, true
}

// subprotocols yields the subprotocols the client offered, in order, across
// every Sec-WebSocket-Protocol header. It allocates nothing: every
// handshake asks it up to three times. (The header is looked up by its
// canonical name: Header.Values would canonicalize "Sec-WebSocket-Protocol"
// into a new string at each call.)
func subprotocols(r *http.Request) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, h := range r.Header["Sec-Websocket-Protocol"] {
			for p := range strings.SplitSeq(h, ",") {
				if p = strings.TrimSpace(p); p != "" && !yield(p) {
					return
				}
			}
		}
	}
}

// subprotocolCredential returns the first well-formed (no white space)
// junction.bearer.<credential> offer,
// provided the client also offered protocol.Subprotocol or
// protocol.CompactSubprotocol.
func subprotocolCredential(r *http.Request) (string, bool) {
	var cred string
	var offered bool
	for p := range subprotocols(r) {
		if p == protocol.Subprotocol || p == protocol.CompactSubprotocol {
			offered = true
			continue
		}
		if cred == "" {
			// A subprotocol is an HTTP token: an offer with white space in
			// its credential is malformed and passed over.
			if v, ok := strings.CutPrefix(p, protocol.BearerSubprotocolPrefix); ok && !strings.ContainsFunc(v, unicode.IsSpace) {
				cred = v
			}
		}
	}
	if !offered || cred == "" {
		return "", false
	}
	return cred, true
}

// OffersSubprotocol reports whether the client offered protocol.Subprotocol,
// in which case the server must answer with it.
func OffersSubprotocol(r *http.Request) bool {
	for p := range subprotocols(r) {
		if p == protocol.Subprotocol {
			return true
		}
	}
	return false
}

// OffersCompactSubprotocol reports whether the client offered
// protocol.CompactSubprotocol (the compact protocol on /ws), in which case
// the server answers with it.
func OffersCompactSubprotocol(r *http.Request) bool {
	for p := range subprotocols(r) {
		if p == protocol.CompactSubprotocol {
			return true
		}
	}
	return false
}
