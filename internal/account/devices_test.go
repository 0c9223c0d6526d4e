package account

import (
	"strings"
	"testing"
)

func TestPairingCode(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newPairingCode()
		if len(c) != pairingCodeLen || strings.Trim(c, pairingAlphabet) != "" {
			t.Fatalf("code %q: want %d characters of %s", c, pairingCodeLen, pairingAlphabet)
		}
		if seen[c] {
			t.Fatalf("code %q drawn twice in 1000 draws", c)
		}
		seen[c] = true
	}
	for _, tc := range []struct{ in, want string }{
		{"ABCDE-FGHJK", "ABCDEFGHJK"},
		{"abcde fghjk", "ABCDEFGHJK"},
		{"O1IL0-00000", "0111000000"},
		{"", ""},
		{"ab-cd", "ABCD"},
	} {
		if got := normalizePairingCode(tc.in); got != tc.want {
			t.Errorf("normalizePairingCode(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}
