package ws

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps a Conn in the 320-byte allocation size class: every
// idle connection holds one, and the next class up is 352 bytes. A new field
// must find room in existing padding or pay for it knowingly.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 320 {
		t.Fatalf("ws.Conn is %d bytes, over the 320-byte size class", n)
	}
}
