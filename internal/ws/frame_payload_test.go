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

// TestPrepareTextAt: a frame whose header is written in front of its
// payload, in the payload's buffer, is byte for byte PrepareText's, for
// payloads of each header length.
func TestPrepareTextAt(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000} {
		p := bytes.Repeat([]byte("w"), n)
		b := append(make([]byte, FrameHeaderRoom, FrameHeaderRoom+n), p...)
		got, want := PrepareTextAt(b), PrepareText(p)
		if !bytes.Equal(got, want) {
			t.Errorf("payload of %d bytes: frame %.20q (%d bytes), want %.20q (%d bytes)", n, got, len(got), want, len(want))
		}
		if cap(got) != len(got) {
			t.Errorf("payload of %d bytes: frame capacity %d, want its length %d (an append must not write into b)", n, cap(got), len(got))
		}
	}
}
