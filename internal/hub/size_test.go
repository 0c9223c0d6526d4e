package hub

import (
	"testing"
	"unsafe"
)

// TestSubscriberSize keeps a subscriber in the 96-byte allocation size
// class: every subscription holds one, and the next class up is 112 bytes.
// Its states share one atomic word (subscriber.flags): a new state is a
// new bit there, not a new field.
func TestSubscriberSize(t *testing.T) {
	if n := unsafe.Sizeof(subscriber{}); n > 96 {
		t.Fatalf("subscriber is %d bytes, over the 96-byte size class", n)
	}
}

// TestConnSize keeps a Conn in the 144-byte allocation size class: every
// connection holds one, and the next class up is 160 bytes. A new field
// must find room in existing padding, go to connExtra, or pay for it
// knowingly.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 144 {
		t.Fatalf("hub.Conn is %d bytes, over the 144-byte size class", n)
	}
}

// TestDeviceClaimSize keeps a deviceClaim in the 24-byte allocation size
// class: every connection with a device holds one, and the next class up is
// 32 bytes.
func TestDeviceClaimSize(t *testing.T) {
	if n := unsafe.Sizeof(deviceClaim{}); n > 24 {
		t.Fatalf("deviceClaim is %d bytes, over the 24-byte size class", n)
	}
}

// TestConnSubsSize keeps connSubs in the 32-byte allocation size class:
// every subscribed connection holds one, and the next class up is 48 bytes.
func TestConnSubsSize(t *testing.T) {
	if n := unsafe.Sizeof(connSubs{}); n > 32 {
		t.Fatalf("connSubs is %d bytes, over the 32-byte size class", n)
	}
}
