package apps

import (
	"bytes"
	"strings"
	"testing"

	"github.com/junctionhq/junction/webhook"
)

// TestSealWebhookSecret: a sealed secret opens under the same key and app
// only; a changed byte, another app id or another key fails; without a
// key sealing is refused.
func TestSealWebhookSecret(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s := &Service{deps: Deps{SealKey: key}}
	sec, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.seal("com.example.a", sec)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(sec.Encode()[len("whsec_"):])) {
		t.Fatal("the sealed form contains the secret")
	}
	got, err := s.unseal("com.example.a", sealed)
	if err != nil || got.Encode() != sec.Encode() {
		t.Fatalf("unseal = %v, %v; want the secret back", got, err)
	}
	if _, err := s.unseal("com.example.b", sealed); err == nil {
		t.Fatal("unsealed under another app id")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.unseal("com.example.a", tampered); err == nil {
		t.Fatal("unsealed a changed ciphertext")
	}
	other := &Service{deps: Deps{SealKey: bytes.Repeat([]byte{8}, 32)}}
	if _, err := other.unseal("com.example.a", sealed); err == nil || !strings.Contains(err.Error(), "webhook-seal.key") {
		t.Fatalf("unseal under another key: %v, want an error naming the key file", err)
	}
	if _, err := (&Service{}).seal("com.example.a", sec); err == nil {
		t.Fatal("sealed without a key")
	}
}

// TestTokens: tickets and resume tokens name their session and are told
// apart by prefix; malformed ones are refused.
func TestTokens(t *testing.T) {
	id, ticket, hash, err := newTicket()
	if err != nil || len(hash) != 32 || !strings.HasPrefix(ticket, "jt_"+id+"_") {
		t.Fatalf("newTicket = %q %q %x, %v", id, ticket, hash, err)
	}
	if got, ok := parseTicket(ticket); !ok || got != id {
		t.Fatalf("parseTicket(%q) = %q %v", ticket, got, ok)
	}
	resume, rhash, err := newSecretToken(resumePrefix, id)
	if err != nil || len(rhash) != 64 {
		t.Fatalf("newSecretToken = %q %q, %v", resume, rhash, err)
	}
	if got, ok := parseToken(resumePrefix, resume); !ok || got != id {
		t.Fatalf("parseToken(%q) = %q %v", resume, got, ok)
	}
	for _, bad := range []string{"", "jt_", "jt_as1", "jt_as1_", "jt_x1_abc", resume, strings.Repeat("jt_as1_a", 20)} {
		if _, ok := parseTicket(bad); ok {
			t.Errorf("parseTicket(%q) accepted", bad)
		}
	}
	if _, ok := parseToken(resumePrefix, ticket); ok {
		t.Errorf("a ticket parsed as a resume token")
	}
}
