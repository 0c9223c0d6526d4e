// Package auth decides who is calling and whether they may come in.
//
// It owns the principal (the authenticated identity of a connection or a
// REST call), JWT access tokens, the extraction of a credential from an HTTP
// request, API keys for third-party app backends (stored only as keyed
// MACs, acting for the users who installed the app),
// the ed25519 challenge primitives of device login, the network lockdown
// policy (the "kill switch") and the browser Origin check.
//
// Every authentication failure is a *Failure whose Reason is a short,
// low-cardinality word suitable as a metrics label. Callers answer clients
// with a generic "unauthorized" and never echo the underlying error.
//
// Its only I/O is the signing key material of a data directory: the HS256
// secret (LoadOrCreateSecret, secret.key), the EdDSA key (CreateEdKey,
// LoadEdKey, ed25519.key) and the Tokens built from either (LoadTokens).
// It declares the stores it needs (APIKeyStore, Installations,
// Revocations); implementations live elsewhere (the store implements
// Revocations, the apps platform the other two).
package auth

import (
	"errors"
	"math"
	"net/url"
	"slices"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Scopes a principal may hold. A scope grants a family of methods; the
// method table of the hub names the scope each method requires.
const (
	// ScopeAdmin grants everything, including every other scope.
	ScopeAdmin = "admin"
	// ScopeWrite grants changes (publish, update, call) and implies ScopeRead.
	ScopeWrite = "write"
	// ScopeRead grants reads and subscriptions.
	ScopeRead = "read"
	// ScopeRPCServe lets a machine register methods that others call through
	// the gateway. Only ScopeAdmin implies it.
	ScopeRPCServe = "rpc.serve"
	// ScopeRPCCall lets an app (an API key, also acting for a user) call and
	// list the methods of the user's devices, besides ScopeWrite or
	// ScopeRead: running a machine's methods is more than a generic write.
	// Only ScopeAdmin implies it.
	ScopeRPCCall = "rpc.call"
)

// Kinds lists the device kinds a principal may have, the values of the "kind"
// claim. Callers must not modify it.
var Kinds = []string{"phone", "tablet", "tv", "glasses", "browser", "machine", "iot"}

// ValidKind reports whether k is one of Kinds.
func ValidKind(k string) bool {
	return slices.Contains(Kinds, k)
}

// Principal is an authenticated identity: a user's device (from an access
// token) or a third-party app (from an API key). A Principal is immutable
// once returned by this package; callers share it and must not modify it.
type Principal struct {
	UserID    string // the user the credential acts for; may be empty for an app key not bound to a user
	DeviceID  string // the device, empty when the credential is not bound to one
	Kind      string // one of Kinds for device credentials; empty for apps
	SessionID string // the login session the token was issued for, if any
	AppID     string // the app, set only for API-key principals
	TokenID   string // the token's "jti", or the API key's public id
	Scopes    []string
	// ExpiresAtMicros is when the credential stops being valid, in Unix
	// microseconds (ExpiryMicros); 0 means it does not expire. ExpiresAt
	// returns it as a time. An int64 rather than a time.Time keeps a
	// Principal, held by every connection, at 128 bytes instead of 144.
	ExpiresAtMicros int64
}

// ExpiryMicros returns t as a Principal's ExpiresAtMicros: 0 for the zero
// time (no expiry). A time that falls on 0 itself (the Unix epoch) is moved
// one microsecond earlier, so it still expires; one beyond the int64 range
// of microseconds (±292,000 years) is clamped to it.
func ExpiryMicros(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxExpiry):
		return math.MaxInt64
	case t.Before(minExpiry):
		return math.MinInt64
	}
	if m := t.UnixMicro(); m != 0 {
		return m
	}
	return -1
}

var maxExpiry, minExpiry = time.UnixMicro(math.MaxInt64), time.UnixMicro(math.MinInt64)

// ExpiresAt returns when p's credential stops being valid; the zero time
// means it does not expire.
func (p *Principal) ExpiresAt() time.Time {
	if p.ExpiresAtMicros == 0 {
		return time.Time{}
	}
	return time.UnixMicro(p.ExpiresAtMicros)
}

// HasScope reports whether p holds scope s. ScopeAdmin implies every scope and
// ScopeWrite implies ScopeRead. A nil principal holds nothing.
func (p *Principal) HasScope(s string) bool {
	if p == nil || s == "" {
		return false
	}
	for _, have := range p.Scopes {
		switch {
		case have == s, have == ScopeAdmin:
			return true
		case have == ScopeWrite && s == ScopeRead:
			return true
		}
	}
	return false
}

// Expired reports whether p's credential has expired at now. A principal with
// a zero ExpiresAtMicros never expires.
func (p *Principal) Expired(now time.Time) bool {
	return p.ExpiresAtMicros != 0 && now.UnixMicro() >= p.ExpiresAtMicros
}

// Info returns the wire form of p, sent in the welcome event. Its Scopes is a
// fresh non-nil slice, so it encodes as [] rather than null.
func (p *Principal) Info() protocol.Principal {
	info := protocol.Principal{
		UserID:   p.UserID,
		DeviceID: p.DeviceID,
		Kind:     p.Kind,
		AppID:    p.AppID,
		Scopes:   append([]string{}, p.Scopes...),
	}
	if p.ExpiresAtMicros != 0 {
		info.ExpiresAtMs = p.ExpiresAt().UnixMilli()
	}
	return info
}

// Key returns a stable key that identifies the principal across connections
// and credentials, for per-principal records such as idempotency keys:
// "app:<appID>" for an app itself, "app:<appID>/u:<userID>" for an app
// acting for a user (so that one user's records never answer another's),
// "u:<userID>/d:<deviceID>" otherwise. The ids are path-escaped so that
// distinct principals never share a key.
func (p *Principal) Key() string {
	if p.AppID != "" {
		if p.UserID != "" {
			return "app:" + url.PathEscape(p.AppID) + "/u:" + url.PathEscape(p.UserID)
		}
		return "app:" + url.PathEscape(p.AppID)
	}
	return "u:" + url.PathEscape(p.UserID) + "/d:" + url.PathEscape(p.DeviceID)
}

// Failure reasons, the values of Failure.Reason. They are few and stable so
// that they can label metrics.
const (
	ReasonMissing       = "missing"        // no credential was presented
	ReasonMalformed     = "malformed"      // the credential cannot be parsed
	ReasonExpired       = "expired"        // the credential (or challenge) has expired
	ReasonSignature     = "signature"      // the signature or secret does not verify, or the algorithm is not accepted
	ReasonInvalidClaims = "invalid_claims" // the token verifies but its claims are missing, of the wrong type or out of range
	ReasonUnknownKey    = "unknown_key"    // the API key id or challenge nonce is not known (or already used)
	ReasonRevoked       = "revoked"        // the credential was revoked
	ReasonLockdown      = "lockdown"       // the client's address is outside the lockdown ranges
	ReasonOrigin        = "origin"         // the browser Origin is not allowed
	ReasonNotInstalled  = "not_installed"  // an app key named a user who has not installed the app
	ReasonOther         = "other"          // returned by FailureReason for errors that are not a *Failure
)

// Failure is an authentication or admission failure. Reason is one of the
// Reason constants; Err says what exactly went wrong and is for logs only,
// never for clients.
type Failure struct {
	Reason string
	Err    error
}

// Error implements error.
func (f *Failure) Error() string {
	if f.Err == nil {
		return "auth: " + f.Reason
	}
	return "auth: " + f.Reason + ": " + f.Err.Error()
}

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

// FailureReason returns the Reason of the *Failure in err's chain, or
// ReasonOther when there is none.
func FailureReason(err error) string {
	if f, ok := errors.AsType[*Failure](err); ok {
		return f.Reason
	}
	return ReasonOther
}

// fail returns a *Failure with the reason wrapping err.
func fail(reason string, err error) *Failure {
	return &Failure{Reason: reason, Err: err}
}
