package auth

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHS256VerifierStrictAndPooled: the fast path's pooled HMAC accepts
// exactly the signature Issue wrote: not another encoding of the same
// bytes (the last character's unused bits set), not a signature of
// another length, not a bad one verified right after a good one on the
// same state, also from many goroutines at once.
func TestHS256VerifierStrictAndPooled(t *testing.T) {
	tk, err := NewTokens(TokenConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tk.Issue(Claims{UserID: "u", DeviceID: "d", Kind: "phone", Scopes: []string{"read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	signing, sig := tok[:i], tok[i+1:]
	if !tk.hs256.verify(signing, sig) {
		t.Fatal("the issued signature does not verify")
	}
	// 32 bytes are 43 characters, the last carrying 4 bits and 2 unused
	// ones: setting one of those decodes to the same bytes, leniently.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	if last < 0 || last&3 != 0 {
		t.Fatalf("signature %q: last character %q is not canonical", sig, sig[len(sig)-1])
	}
	lenient := sig[:len(sig)-1] + string(alphabet[last|1])
	bad := sig[:10] + string(alphabet[(strings.IndexByte(alphabet, sig[10])+1)%64]) + sig[11:]
	cases := []struct {
		name, signing, sig string
		want               bool
	}{
		{"issued", signing, sig, true},
		{"same bytes, non-canonical encoding", signing, lenient, false},
		{"one character changed", signing, bad, false},
		{"truncated", signing, sig[:len(sig)-1], false},
		{"padded", signing, sig + "=", false},
		{"extended", signing, sig + "AAAA", false},
		{"empty", signing, "", false},
		{"other signing string", signing + "x", sig, false},
	}
	for _, c := range cases {
		if got := tk.hs256.verify(c.signing, c.sig); got != c.want {
			t.Errorf("%s: verify = %v, want %v", c.name, got, c.want)
		}
		if _, err := tk.Verify(c.signing + "." + c.sig); (err == nil) != c.want {
			t.Errorf("%s: Verify error %v, want success %v", c.name, err, c.want)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				c := cases[(g+n)%len(cases)]
				if got := tk.hs256.verify(c.signing, c.sig); got != c.want {
					t.Errorf("concurrent %s: verify = %v, want %v", c.name, got, c.want)
					return
				}
			}
		})
	}
	wg.Wait()
}
