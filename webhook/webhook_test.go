package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks reference libraries' published example
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// TestWebhookSign; the same vector is in Svix's "verifying manually" docs).
// Written out here, not computed by the code under test.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specHeaders() http.Header {
	h := http.Header{}
	h.Set(HeaderID, specID)
	h.Set(HeaderTimestamp, fmt.Sprint(specTimestamp))
	h.Set(HeaderSignature, specSignature)
	return h
}

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return sec
}

func clockAt(unix int64) func() time.Time { return func() time.Time { return time.Unix(unix, 0) } }

func TestSpecVectorSign(t *testing.T) {
	sec := mustSecret(t, specSecret)
	got, err := sec.Sign(specID, time.Unix(specTimestamp, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != specSignature {
		t.Fatalf("got %s, want %s", got, specSignature)
	}
	h := http.Header{}
	if err := SignHeaders(h, specID, time.Unix(specTimestamp, 0), []byte(specBody), sec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
		if got, want := h.Get(k), specHeaders().Get(k); got != want {
			t.Errorf("header %s: got %q, want %q", k, got, want)
		}
	}
}

func TestSpecVectorVerify(t *testing.T) {
	v := &Verifier{Secrets: []Secret{mustSecret(t, specSecret)}, Now: clockAt(specTimestamp)}
	m, err := v.Verify(specHeaders(), []byte(specBody))
	if err != nil {
		t.Fatalf("the published vector does not verify: %v", err)
	}
	if m.ID != specID || m.Timestamp.Unix() != specTimestamp {
		t.Fatalf("got %+v, want id %s at %d", m, specID, specTimestamp)
	}
}

func TestVerifyRefusals(t *testing.T) {
	good := mustSecret(t, specSecret)
	other, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	otherSig, _ := other.Sign(specID, time.Unix(specTimestamp, 0), []byte(specBody))
	tests := []struct {
		name    string
		edit    func(h http.Header)
		body    string
		secrets []Secret
		now     int64
		want    error
	}{
		{name: "tampered body", body: `{"test": 2432232315}`, want: ErrSignatureMismatch},
		{name: "tampered id", edit: func(h http.Header) { h.Set(HeaderID, specID+"x") }, want: ErrSignatureMismatch},
		{name: "tampered timestamp", edit: func(h http.Header) { h.Set(HeaderTimestamp, fmt.Sprint(specTimestamp+1)) }, want: ErrSignatureMismatch},
		{name: "signed by another secret", edit: func(h http.Header) { h.Set(HeaderSignature, otherSig) }, want: ErrSignatureMismatch},
		{name: "wrong secret held", secrets: []Secret{other}, want: ErrSignatureMismatch},
		{name: "no secret held", secrets: []Secret{}, want: ErrSignatureMismatch},
		{name: "missing id", edit: func(h http.Header) { h.Del(HeaderID) }, want: ErrMissingHeader},
		{name: "missing timestamp", edit: func(h http.Header) { h.Del(HeaderTimestamp) }, want: ErrMissingHeader},
		{name: "missing signature", edit: func(h http.Header) { h.Del(HeaderSignature) }, want: ErrMissingHeader},
		{name: "id with a space", edit: func(h http.Header) { h.Set(HeaderID, "msg 1") }, want: ErrBadID},
		{name: "id too long", edit: func(h http.Header) { h.Set(HeaderID, strings.Repeat("a", MaxIDLen+1)) }, want: ErrBadID},
		{name: "timestamp not a number", edit: func(h http.Header) { h.Set(HeaderTimestamp, "16142653e0") }, want: ErrBadTimestamp},
		{name: "timestamp signed", edit: func(h http.Header) { h.Set(HeaderTimestamp, "+1614265330") }, want: ErrBadTimestamp},
		{name: "timestamp in ms", edit: func(h http.Header) { h.Set(HeaderTimestamp, "1614265330000000") }, want: ErrBadTimestamp},
		{name: "too old", now: specTimestamp + 5*60 + 1, want: ErrTimestampTooOld},
		{name: "too new", now: specTimestamp - 5*60 - 1, want: ErrTimestampTooNew},
		{name: "only another version", edit: func(h http.Header) { h.Set(HeaderSignature, "v1a,"+specSignature[3:]) }, want: ErrBadSignatures},
		{name: "entry without comma", edit: func(h http.Header) { h.Set(HeaderSignature, specSignature+" v1") }, want: ErrBadSignatures},
		{name: "v1 entry not base64", edit: func(h http.Header) { h.Set(HeaderSignature, "v1,@@@@ "+specSignature) }, want: ErrBadSignatures},
		{name: "version without value", edit: func(h http.Header) { h.Set(HeaderSignature, ",AAAA "+specSignature) }, want: ErrBadSignatures},
		{name: "too many entries", edit: func(h http.Header) { h.Set(HeaderSignature, strings.Repeat("v1,AAAA ", 16)+specSignature) }, want: ErrBadSignatures},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := specHeaders()
			if tt.edit != nil {
				tt.edit(h)
			}
			body := specBody
			if tt.body != "" {
				body = tt.body
			}
			secrets := []Secret{good}
			if tt.secrets != nil {
				secrets = tt.secrets
			}
			now := int64(specTimestamp)
			if tt.now != 0 {
				now = tt.now
			}
			v := &Verifier{Secrets: secrets, Now: clockAt(now)}
			_, err := v.Verify(h, []byte(body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestToleranceEdges(t *testing.T) {
	v := &Verifier{Secrets: []Secret{mustSecret(t, specSecret)}}
	for _, d := range []int64{-300, 300} {
		v.Now = clockAt(specTimestamp + d)
		if _, err := v.Verify(specHeaders(), []byte(specBody)); err != nil {
			t.Errorf("now = signed%+ds: got %v, want accepted (tolerance is 5 minutes)", d, err)
		}
	}
	v.Tolerance = time.Minute
	v.Now = clockAt(specTimestamp + 61)
	if _, err := v.Verify(specHeaders(), []byte(specBody)); !errors.Is(err, ErrTimestampTooOld) {
		t.Errorf("1-minute tolerance, 61 s late: got %v, want ErrTimestampTooOld", err)
	}
}

// TestRotation: a sender signing with the new and the old secret is
// accepted by receivers holding either; a receiver holding both accepts
// either sender; extra spaces and unknown versions around the entries are
// fine.
func TestRotation(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	ts := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"session.start"}`)
	both := http.Header{}
	if err := SignHeaders(both, "msg_1", ts, body, newS, oldS); err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(both.Get(HeaderSignature))); n != 2 {
		t.Fatalf("got %d signatures, want 2", n)
	}
	onlyOld := http.Header{}
	if err := SignHeaders(onlyOld, "msg_1", ts, body, oldS); err != nil {
		t.Fatal(err)
	}
	padded := onlyOld.Clone()
	padded.Set(HeaderSignature, "v2,AAAA   v1a,not-base64!  "+onlyOld.Get(HeaderSignature)+" ")
	for _, c := range []struct {
		name    string
		h       http.Header
		secrets []Secret
	}{
		{"both signed, receiver has old", both, []Secret{oldS}},
		{"both signed, receiver has new", both, []Secret{newS}},
		{"old signed, receiver has both", onlyOld, []Secret{newS, oldS}},
		{"padded with other versions", padded, []Secret{oldS}},
	} {
		v := &Verifier{Secrets: c.secrets, Now: func() time.Time { return ts }}
		if _, err := v.Verify(c.h, body); err != nil {
			t.Errorf("%s: got %v, want accepted", c.name, err)
		}
	}
	v := &Verifier{Secrets: []Secret{newS}, Now: func() time.Time { return ts }}
	if _, err := v.Verify(onlyOld, body); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("old signed, receiver has only new: got %v, want ErrSignatureMismatch", err)
	}
}

func TestParseSecret(t *testing.T) {
	for _, c := range []struct{ in, why string }{
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "no prefix"},
		{"whsec_", "empty"},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "not base64"},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16)), "too short"},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), "too long"},
		{"whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 24)), "URL alphabet"},
	} {
		if _, err := ParseSecret(c.in); !errors.Is(err, ErrBadSecret) {
			t.Errorf("%s (%q): got %v, want ErrBadSecret", c.why, c.in, err)
		}
	}
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSecret(s.Encode())
	if err != nil || !bytes.Equal(back.key, s.key) || len(s.key) != SecretBytes {
		t.Fatalf("round trip of %d-byte secret: got %v, %v", len(s.key), back.key, err)
	}
	if _, err := (Secret{}).Sign("msg_1", time.Now(), nil); !errors.Is(err, ErrBadSecret) {
		t.Errorf("zero secret signs: got %v, want ErrBadSecret", err)
	}
}

// TestSecretRedacted: printing or logging a Secret by mistake shows no key.
func TestSecretRedacted(t *testing.T) {
	s := mustSecret(t, specSecret)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logged.String()} {
		if strings.Contains(out, "MfKQ9r8G") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Encode() != specSecret {
		t.Errorf("Encode: got %s, want %s", s.Encode(), specSecret)
	}
}

func TestNewIDSignable(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if err := checkID(id); err != nil || !strings.HasPrefix(id, "msg_") || seen[id] {
			t.Fatalf("NewID gave %q (%v, repeated %v)", id, err, seen[id])
		}
		seen[id] = true
	}
}

func TestVerifyRequest(t *testing.T) {
	sec := mustSecret(t, specSecret)
	v := &Verifier{Secrets: []Secret{sec}, Now: clockAt(specTimestamp)}
	r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(specBody))
	r.Header = specHeaders()
	body, m, err := v.VerifyRequest(r, 1024)
	if err != nil || string(body) != specBody || m.ID != specID {
		t.Fatalf("got %q, %+v, %v; want the spec body verified", body, m, err)
	}
	r = httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(specBody))
	r.Header = specHeaders()
	if _, _, err := v.VerifyRequest(r, int64(len(specBody)-1)); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("body over the limit: got %v, want ErrBodyTooLarge", err)
	}
}

// FuzzParseSignatures: the parser never panics, respects its bounds, and
// what it accepts re-encodes to entries it accepts again.
func FuzzParseSignatures(f *testing.F) {
	for _, s := range []string{
		specSignature,
		"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + specSignature,
		"v1a,AAAA", "", " ", "v1,", ",AAAA", "v1,AAAA==", "v1,AAAA\tv1,BBBB", "v1,A", strings.Repeat("v1,AAAA ", 17),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		sigs, err := ParseSignatures(header)
		if err != nil {
			if !errors.Is(err, ErrBadSignatures) {
				t.Fatalf("error %v does not wrap ErrBadSignatures", err)
			}
			return
		}
		if len(header) > MaxSignatureHeader || len(sigs) == 0 || len(sigs) > maxSignatures {
			t.Fatalf("accepted %d entries from %d bytes", len(sigs), len(header))
		}
		v1 := false
		parts := make([]string, len(sigs))
		for i, s := range sigs {
			v1 = v1 || s.Version == "v1"
			if (s.Version == "v1") != (len(s.Value) > 0) || s.Version == "" || strings.ContainsAny(s.Version, ", \t\r\n") {
				t.Fatalf("entry %d: %+v", i, s)
			}
			parts[i] = s.Version + "," + base64.StdEncoding.EncodeToString(s.Value)
		}
		if !v1 {
			t.Fatalf("accepted without a v1 entry: %q", header)
		}
		again, err := ParseSignatures(strings.Join(parts, " "))
		if err != nil || len(again) != len(sigs) {
			t.Fatalf("re-encoded %q: %v (%d entries, want %d)", parts, err, len(again), len(sigs))
		}
	})
}
