package ws

import (
	"bytes"
	"testing"
)

// TestPreparedPayload reads back the payload of prepared frames of every
// header size, and refuses what is not one.
func TestPreparedPayload(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000} {
		p := bytes.Repeat([]byte("x"), n)
		if got := PreparedPayload(PrepareText(p)); !bytes.Equal(got, p) {
			t.Errorf("payload of %d bytes: got %d bytes back", n, len(got))
		}
	}
	for _, bad := range [][]byte{nil, {0x81}, {0x81, 5, 'a'}, {0x81, 0x81, 0, 0, 0, 0}, {0x81, 126, 0}} {
		if got := PreparedPayload(bad); got != nil {
			t.Errorf("PreparedPayload(%v) = %q, want nil", bad, got)
		}
	}
}
