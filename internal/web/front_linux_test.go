package web

import (
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestAcceptedPeerAddress: the peer address of a raw accept reads as net
// would write it, for IPv4, IPv6 and IPv4-mapped IPv6 peers.
func TestAcceptedPeerAddress(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen string
	}{
		{"tcp4", "tcp4", "127.0.0.1:0"},
		{"tcp6", "tcp6", "[::1]:0"},
		{"dual stack", "tcp", "[::]:0"}, // dialed over IPv4: a mapped address
	} {
		t.Run(tc.name, func(t *testing.T) { testAcceptedPeerAddress(t, tc.network, tc.listen) })
	}
}

func testAcceptedPeerAddress(t *testing.T, network, listen string) {
	ln, err := net.Listen(network, listen)
	if err != nil {
		// Visible: scripts/test.sh allows this skip only on a machine
		// without IPv6 (scripts/testsummary).
		t.Skipf("%s %s: %v", network, listen, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	dialTo := ln.Addr().String()
	if network == "tcp" {
		dialTo = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
	}
	nc, err := net.Dial("tcp", dialTo)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	var rsa unix.RawSockaddrAny
	fd := -1
	var aerr error
	_ = rc.Control(func(lfd uintptr) {
		for range 1000 { // the connection is in the queue once Dial returned
			if fd, aerr = accept4(int(lfd), &rsa); aerr != unix.EAGAIN {
				return
			}
		}
	})
	if aerr != nil {
		t.Fatalf("%s: accept4: %v", listen, aerr)
	}
	if got, want := addrPort(&rsa).String(), nc.LocalAddr().String(); got != want {
		t.Errorf("%s: peer %s, want %s (family %d, %d bytes)", listen, got, want, rsa.Addr.Family, unsafe.Sizeof(rsa))
	}
	unix.Close(fd)
	nc.Close()
	ln.Close()
}
