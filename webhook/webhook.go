// Package webhook signs and verifies webhooks as the Standard Webhooks
// specification (standardwebhooks.com) defines them, symmetric scheme v1.
//
// A signed request carries three headers:
//
//	webhook-id:        msg_2b7…                  (unique per message; receivers dedupe on it)
//	webhook-timestamp: 1614265330                (Unix seconds, when it was signed)
//	webhook-signature: v1,<base64 HMAC-SHA256>   (one or more, space-separated)
//
// The HMAC key is the secret's decoded bytes and the signed content is
// `id + "." + timestamp + "." + body`, the body byte for byte as sent. A
// secret is written `whsec_<base64>`. During a rotation the sender signs
// with both the old and the new secret and sends both signatures; a
// receiver accepts the message when any v1 signature matches any secret it
// holds. Receivers refuse timestamps more than Tolerance (5 minutes by
// default) away from their clock, which bounds replays to that window;
// within it, deduplicating on webhook-id is the receiver's job.
//
// Junction's server signs app webhooks with it, and app backends (the Go
// apps SDK) verify them with it. The package has no dependency beyond the
// standard library.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names, in the lower case the specification writes them
// (http.Header canonicalizes them on Set and Get).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	// SecretPrefix starts the text form of a Secret.
	SecretPrefix = "whsec_"
	// DefaultTolerance is how far a timestamp may be from the receiver's
	// clock, in either direction, when Verifier.Tolerance is zero.
	DefaultTolerance = 5 * time.Minute
	// SecretBytes is the length of a secret made by NewSecret.
	SecretBytes = 32

	minSecretBytes = 24 // the specification's own examples use 24 bytes
	maxSecretBytes = 64
	// MaxIDLen bounds webhook-id. The specification does not; a bound
	// keeps headers and dedupe keys small.
	MaxIDLen = 256
	// MaxSignatureHeader bounds the webhook-signature header the verifier
	// reads, and maxSignatures the entries it tries, so a hostile header
	// cannot make it compute many HMACs.
	MaxSignatureHeader = 4096
	maxSignatures      = 16
)

// Errors returned by ParseSecret, Sign, ParseSignatures and Verify. Each
// returned error wraps exactly one of them, with a message that names the
// header or value at fault; match with errors.Is.
var (
	ErrBadSecret         = errors.New("webhook: bad secret")
	ErrBadID             = errors.New("webhook: bad webhook-id")
	ErrMissingHeader     = errors.New("webhook: missing header")
	ErrBadTimestamp      = errors.New("webhook: bad webhook-timestamp")
	ErrTimestampTooOld   = errors.New("webhook: webhook-timestamp too old")
	ErrTimestampTooNew   = errors.New("webhook: webhook-timestamp too far in the future")
	ErrBadSignatures     = errors.New("webhook: no v1 signature in webhook-signature")
	ErrSignatureMismatch = errors.New("webhook: no signature matches")
	ErrBodyTooLarge      = errors.New("webhook: body too large")
)

// Secret is an HMAC key. Its zero value is not usable. String, GoString
// and LogValue redact it, so a Secret printed or logged by mistake does
// not leak; Encode gives the text form for storage and for the app
// developer who must receive it once.
type Secret struct {
	key []byte // set once by NewSecret or ParseSecret; never modified
}

// NewSecret returns a random secret of SecretBytes bytes.
func NewSecret() (Secret, error) {
	key := make([]byte, SecretBytes)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("webhook: new secret: %w", err)
	}
	return Secret{key: key}, nil
}

// ParseSecret decodes `whsec_<standard base64>` of 24 to 64 bytes.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("%w: want the %q prefix", ErrBadSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return Secret{}, fmt.Errorf("%w: not standard base64 after %q", ErrBadSecret, SecretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return Secret{}, fmt.Errorf("%w: %d bytes, want %d to %d", ErrBadSecret, len(key), minSecretBytes, maxSecretBytes)
	}
	return Secret{key: key}, nil
}

// Encode returns the text form, `whsec_<base64>`.
func (s Secret) Encode() string { return SecretPrefix + base64.StdEncoding.EncodeToString(s.key) }

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String redacts the secret.
func (s Secret) String() string { return SecretPrefix + "[redacted]" }

// GoString redacts the secret (%#v).
func (s Secret) GoString() string { return s.String() }

// LogValue redacts the secret in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Sign returns the v1 signature of a message, `v1,<base64 HMAC>`.
func (s Secret) Sign(id string, ts time.Time, body []byte) (string, error) {
	if s.IsZero() {
		return "", fmt.Errorf("%w: zero secret", ErrBadSecret)
	}
	if err := checkID(id); err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(id, ts.Unix(), body)), nil
}

func (s Secret) mac(id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	var num [20]byte
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(num[:0], ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// checkID accepts 1 to MaxIDLen visible ASCII characters other than space
// and comma: anything else could not travel in a header unchanged.
func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: length %d, want 1 to %d", ErrBadID, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return fmt.Errorf("%w: byte %#x at %d", ErrBadID, c, i)
		}
	}
	return nil
}

// SignHeaders sets the three headers of a message signed with every
// secret given (one signature each, in order: during a rotation pass the
// new and the old secret).
func SignHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...Secret) error {
	if len(secrets) == 0 {
		return fmt.Errorf("%w: no secret to sign with", ErrBadSecret)
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := s.Sign(id, ts, body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	return nil
}

// NewID returns a random message id, `msg_` and 26 base32 characters.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead since Go 1.24)
	return "msg_" + strings.ToLower(base32NoPad.EncodeToString(b[:]))
}

var base32NoPad = base32.StdEncoding.WithPadding(base32.NoPadding)

// Signature is one entry of a webhook-signature header.
type Signature struct {
	Version string // "v1" for the symmetric scheme; other versions are kept, not checked
	Value   []byte // v1: the decoded signature bytes; nil for other versions
}

// ParseSignatures reads a webhook-signature header: entries separated by
// single or repeated spaces, each `<version>,<signature>`. Entries of other
// versions (v1a is the specification's asymmetric scheme) are returned
// without their value and Verify ignores them, so a sender may add a
// scheme this package does not know. An entry without a comma, a v1 entry
// that is not standard base64, a header longer than MaxSignatureHeader,
// more than 16 entries, or no v1 entry at all is an error.
func ParseSignatures(header string) ([]Signature, error) {
	if len(header) > MaxSignatureHeader {
		return nil, fmt.Errorf("%w: header of %d bytes, limit %d", ErrBadSignatures, len(header), MaxSignatureHeader)
	}
	var sigs []Signature
	v1 := false
	for entry := range strings.FieldsSeq(header) {
		if len(sigs) == maxSignatures {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadSignatures, maxSignatures)
		}
		version, b64, ok := strings.Cut(entry, ",")
		if !ok || version == "" {
			return nil, fmt.Errorf("%w: entry %d is not <version>,<base64>", ErrBadSignatures, len(sigs)+1)
		}
		var value []byte
		if version == "v1" {
			var err error
			value, err = base64.StdEncoding.Strict().DecodeString(b64)
			if err != nil || len(value) == 0 {
				return nil, fmt.Errorf("%w: entry %d (v1) is not base64", ErrBadSignatures, len(sigs)+1)
			}
			v1 = true
		}
		sigs = append(sigs, Signature{Version: version, Value: value})
	}
	if !v1 {
		return nil, ErrBadSignatures
	}
	return sigs, nil
}

// Message is what Verify learned from a verified request's headers.
type Message struct {
	ID        string    // webhook-id: dedupe on it
	Timestamp time.Time // webhook-timestamp
}

// Verifier checks signed requests. Its zero value has no secret and
// refuses everything; set Secrets.
type Verifier struct {
	// Secrets are the keys accepted; a rotation lists the new and the old
	// one until every sender uses the new one.
	Secrets []Secret
	// Tolerance is how far webhook-timestamp may be from Now, in either
	// direction; zero means DefaultTolerance. It cannot be disabled.
	Tolerance time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks the headers and body of a request: all three headers
// present, a well-formed webhook-id, a timestamp within the tolerance, and
// at least one v1 signature equal (constant-time compare) to the HMAC of
// one of the secrets. It returns the message's id and timestamp.
func (v *Verifier) Verify(h http.Header, body []byte) (Message, error) {
	id, tsText, sigText := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	for _, f := range [...]struct{ name, value string }{{HeaderID, id}, {HeaderTimestamp, tsText}, {HeaderSignature, sigText}} {
		if f.value == "" {
			return Message{}, fmt.Errorf("%w: %s", ErrMissingHeader, f.name)
		}
	}
	if err := checkID(id); err != nil {
		return Message{}, err
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return Message{}, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	at := time.Unix(ts, 0)
	switch d := now().Sub(at); {
	case d > tol:
		return Message{}, fmt.Errorf("%w: signed %s ago, tolerance %s", ErrTimestampTooOld, d.Truncate(time.Second), tol)
	case -d > tol:
		return Message{}, fmt.Errorf("%w: signed %s ahead, tolerance %s", ErrTimestampTooNew, (-d).Truncate(time.Second), tol)
	}
	sigs, err := ParseSignatures(sigText)
	if err != nil {
		return Message{}, err
	}
	if len(v.Secrets) == 0 {
		return Message{}, fmt.Errorf("%w: the verifier holds no secret", ErrSignatureMismatch)
	}
	for _, s := range v.Secrets {
		if s.IsZero() {
			continue
		}
		want := s.mac(id, ts, body)
		for _, sig := range sigs {
			if sig.Version == "v1" && hmac.Equal(sig.Value, want) {
				return Message{ID: id, Timestamp: at}, nil
			}
		}
	}
	return Message{}, ErrSignatureMismatch
}

// parseTimestamp accepts 1 to 12 decimal digits (Unix seconds up to year
// 33658), nothing else: no sign, no spaces, no fraction.
func parseTimestamp(s string) (int64, error) {
	if len(s) == 0 || len(s) > 12 {
		return 0, fmt.Errorf("%w: want Unix seconds", ErrBadTimestamp)
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: want Unix seconds", ErrBadTimestamp)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// VerifyRequest reads r's body (at most maxBody bytes; more is
// ErrBodyTooLarge) and verifies it with r's headers. It returns the body
// only when the request verified.
func (v *Verifier) VerifyRequest(r *http.Request, maxBody int64) ([]byte, Message, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, Message{}, fmt.Errorf("webhook: read body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return nil, Message{}, fmt.Errorf("%w: limit %d bytes", ErrBodyTooLarge, maxBody)
	}
	m, err := v.Verify(r.Header, body)
	if err != nil {
		return nil, Message{}, err
	}
	return body, m, nil
}
