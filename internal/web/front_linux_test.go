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
		network, listen string
	}{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
		{"tcp", "[::]:0"}, // dual stack, dialed over IPv4: a mapped address
	} {
		ln, err := net.Listen(tc.network, tc.listen)
		if err != nil {
			t.Logf("%s %s: %v (skipped)", tc.network, tc.listen, err)
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		dialTo := ln.Addr().String()
		if tc.network == "tcp" {
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
			t.Fatalf("%s: accept4: %v", tc.listen, aerr)
		}
		if got, want := addrPort(&rsa).String(), nc.LocalAddr().String(); got != want {
			t.Errorf("%s: peer %s, want %s (family %d, %d bytes)", tc.listen, got, want, rsa.Addr.Family, unsafe.Sizeof(rsa))
		}
		unix.Close(fd)
		nc.Close()
		ln.Close()
	}
}
