package ws

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/protocol"
)

// fdWriter hands a bare descriptor to UpgradeWith, as the front door does.
type fdWriter struct {
	http.ResponseWriter
	fd  int
	buf []byte
}

func (w *fdWriter) HijackFD() (int, []byte, bool) { return w.fd, w.buf, true }

// wrapped is a middleware's ResponseWriter.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// startFDServer is startServer with connections attached as bare
// descriptors (AttachFD through FDHijacker): the handler takes the socket
// away from net/http as a duplicate, as if it had been accepted raw.
func startFDServer(t *testing.T, cfg Config, h *testHandler) string {
	t.Helper()
	tr := New(cfg)
	if err := tr.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		fd := dupFD(t, nc)
		_ = nc.Close() // the duplicate alone refers to the socket now
		var buf []byte
		if n := rw.Reader.Buffered(); n > 0 {
			buf, _ = rw.Reader.Peek(n)
		}
		var c *Conn
		if cfg.Kind == Portable {
			// UpgradeWith hijacks a net.Conn for Portable; AttachFD
			// makes one of the descriptor.
			resp, herr := ServerHandshake(r, "junction.v1")
			if herr != nil {
				t.Errorf("ServerHandshake: %v", herr)
				return
			}
			c, err = tr.AttachFD(fd, RoleServer, h, AttachOptions{Preamble: resp, Buffered: append([]byte(nil), buf...)})
		} else {
			// Wrapped, as middleware does: UpgradeWith unwraps to find it.
			c, err = tr.UpgradeWith(wrapped{&fdWriter{ResponseWriter: w, fd: fd, buf: buf}}, r, "junction.v1", h, AttachOptions{})
		}
		if err != nil {
			t.Errorf("UpgradeWith: %v", err)
			return
		}
		h.conns <- c
	}))
	t.Cleanup(func() {
		srv.Close()
		_ = tr.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// dupFD returns a close-on-exec duplicate of nc's descriptor; it shares the
// socket's non-blocking mode.
func dupFD(t *testing.T, nc net.Conn) int {
	t.Helper()
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	return fd
}

// TestAttachFD runs a connection on a bare descriptor: messages both ways,
// its peer address asked of the kernel (Epoll), the close handshake, and the
// socket closed when it finishes (the client reads EOF).
func TestAttachFD(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(true)
		url := startFDServer(t, Config{Kind: kind}, h)
		cl := dial(t, url)
		c := h.waitConn(t)
		if got, want := c.RemoteAddr().String(), cl.LocalAddr().String(); got != want {
			t.Fatalf("RemoteAddr = %s, want the client's %s", got, want)
		}
		for _, m := range []string{"one", strings.Repeat("two", 20000)} {
			cl.send(t, m)
			if got := cl.recv(t); got != m {
				t.Fatalf("echo %.20q, want %.20q", got, m)
			}
		}
		c.Close(protocol.CloseNormal, "bye")
		if code := cl.readClose(t); code != protocol.CloseNormal {
			t.Fatalf("close code %d, want %d", code, protocol.CloseNormal)
		}
		if ev := h.waitClose(t); ev.code != protocol.CloseNormal {
			t.Fatalf("OnClose code %d, want %d", ev.code, protocol.CloseNormal)
		}
		if _, cut := cl.readCloseOrCut(t); !cut {
			t.Fatal("a frame after the close handshake; want the socket closed")
		}
		if kind == Epoll && c.RemoteAddr() != nil { // Portable's is its net.Conn's
			t.Fatalf("RemoteAddr of a finished connection = %v, want nil", c.RemoteAddr())
		}
	})
}

// TestFDRefs: a descriptor shut while a system call holds a reference is
// closed when that reference is released, not before, and no reference is
// taken after the shut.
func TestFDRefs(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	c := &Conn{fd: int32(p[0])}
	open := func() bool {
		// Writing to a pipe with no reader fails with EPIPE.
		_, err := unix.Write(p[1], []byte{0})
		if err != nil && !errors.Is(err, unix.EPIPE) {
			t.Fatalf("write: %v", err)
		}
		return err == nil
	}
	if !c.acquireFD() {
		t.Fatal("acquireFD refused on an open descriptor")
	}
	c.shutFD()
	if !open() {
		t.Fatal("descriptor closed while a reference was held")
	}
	if c.acquireFD() {
		t.Fatal("acquireFD succeeded after shutFD")
	}
	c.releaseFD()
	if open() {
		t.Fatal("descriptor still open after its last reference was released")
	}
	c.shutFD() // idempotent: must not close the number again
}
