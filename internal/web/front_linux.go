//go:build linux

package web

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errWouldBlock says a bare descriptor has nothing to read, or no room to
// write, right now.
var errWouldBlock = errors.New("web: would block")

// deferAccept is the TCP_DEFER_ACCEPT of a raw accept loop's listener, in
// seconds: the kernel hands over a connection once its first bytes have
// arrived, so its request head is usually read at once, without waiting. A
// connection still silent after this is handed over anyway (and waits as a
// net.Conn, within the head timeout).
const deferAccept = 5

// acceptRaw runs the accept loop on a duplicate of ln's descriptor when ln
// is a TCP listener: accept4 gives bare, non-blocking descriptors, which
// wait in the runtime's poller only if their request has not arrived. It
// reports false, having done nothing, when ln cannot be accepted from this
// way; otherwise it returns when the loop ends.
func (f *Front) acceptRaw(ln net.Listener) (bool, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return false, nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return false, nil
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		// Accepted sockets inherit TCP_NODELAY, which net sets on every
		// connection it accepts.
		if derr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); derr != nil {
			return
		}
		if derr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAccept); derr != nil {
			return
		}
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return false, nil
	}
	// The duplicate shares the listener's non-blocking mode, so os.NewFile
	// registers it with the runtime's poller: a RawConn Read on it waits
	// for a connection without holding a thread.
	lf := os.NewFile(uintptr(dup), "listener")
	lrc, err := lf.SyscallConn()
	if err != nil {
		_ = lf.Close()
		return false, nil
	}
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		_ = lf.Close()
		return true, net.ErrClosed
	}
	f.lfile = lf
	f.mu.Unlock()

	var rsa unix.RawSockaddrAny
	for {
		nfd := -1
		var aerr error
		err := lrc.Read(func(fd uintptr) bool {
			nfd, aerr = accept4(int(fd), &rsa)
			return !errors.Is(aerr, unix.EAGAIN)
		})
		if err != nil { // the listener was closed
			return true, err
		}
		if aerr != nil {
			if errors.Is(aerr, unix.ECONNABORTED) || errors.Is(aerr, unix.EINTR) {
				continue
			}
			if f.retryAccept(os.NewSyscallError("accept4", aerr)) {
				continue
			}
			return true, os.NewSyscallError("accept4", aerr)
		}
		f.dispatch(incoming{fd: nfd, peer: addrPort(&rsa)})
	}
}

// accept4 accepts a connection from listener fd as a non-blocking,
// close-on-exec descriptor, with the peer's address in rsa. (unix.Accept4
// also asks every IPv4 socket for its protocol, a getsockopt(2) per accept,
// to tell L2TP sockets apart.)
func accept4(fd int, rsa *unix.RawSockaddrAny) (int, error) {
	n := uint32(unix.SizeofSockaddrAny)
	r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// addrPort converts an accepted peer's address, as net would (an
// IPv4-mapped IPv6 address reads as IPv4).
func addrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs converts a port in network byte order, as the kernel stores it.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// readNow reads from a non-blocking descriptor: errWouldBlock when nothing
// is there, io.EOF at the end.
func readNow(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, errWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeNow writes what a non-blocking descriptor takes of b at once:
// errWouldBlock when that is not all of it.
func writeNow(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(fd, b[n:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return n, errWouldBlock
		case err != nil:
			return n, os.NewSyscallError("write", err)
		}
		n += m
	}
	return n, nil
}

// shutdownWrite sends FIN after what the socket holds.
func shutdownWrite(fd int) { _ = unix.Shutdown(fd, unix.SHUT_WR) }

// closeFD closes a bare descriptor.
func closeFD(fd int) { _ = unix.Close(fd) }

// fdConn makes a net.Conn of a bare socket descriptor, which it closes (the
// net.Conn has a duplicate), even on error.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return nc, nil
}
