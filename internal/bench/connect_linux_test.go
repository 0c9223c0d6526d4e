package bench

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRawConnectParsing(t *testing.T) {
	accept := []byte("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
	for _, tc := range []struct {
		head, want string
	}{
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", ""},
		{"HTTP/1.1 101 Switching Protocols\r\nSec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", ""},
		{"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: wrong\r\n\r\n", "Sec-WebSocket-Accept"},
		{"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", "401 Unauthorized"},
	} {
		err := checkUpgrade([]byte(tc.head), accept)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkUpgrade(%.30q) = %v, want %q", tc.head, err, tc.want)
		}
	}
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		in       string
		payload  string
		complete bool
		err      string
	}{
		{"", "", false, ""},
		{"\x81", "", false, ""},
		{"\x81\x05hel", "", false, ""},
		{"\x81\x05hello+more", "hello", true, ""},
		{"\x81\x7e\x01\x2c" + long, long, true, ""},
		{"\x81\x7e\x01", "", false, ""},
		{"\x88\x06\x0f\xa0auth", "", false, "closed by server: 4000 auth"},
		{"\x82\x00", "", false, "opcode 2"},
		{"\x81\x7f", "", false, "too long"},
	} {
		p, ok, err := firstFrame([]byte(tc.in))
		if string(p) != tc.payload || ok != tc.complete || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("firstFrame(%.10q) = %.10q, %v, %v; want %.10q, %v, %q", tc.in, p, ok, err, tc.payload, tc.complete, tc.err)
		}
	}
}

// TestConnectFDInterrupted interrupts a blocking connect with signals, as
// the runtime's preemption does under load: connectFD must still connect
// (a bare connect failed with "interrupted system call", failing
// TestBenchConnect now and then).
func TestConnectFDInterrupted(t *testing.T) {
	// A listener with a full accept queue: the next connect waits in the
	// kernel until the test accepts.
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	newSocket := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		tv := unix.Timeval{Sec: 10} // as connectRaw: no restart after a signal
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	// Fill the accept queue.
	var filler []int
	defer func() {
		for _, fd := range filler {
			unix.Close(fd)
		}
	}()
	for range 2 {
		fd := newSocket()
		filler = append(filler, fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		_ = unix.Connect(fd, sa) // completes, or stays pending: either fills the queue
	}

	fd := newSocket()
	defer unix.Close(fd)
	tid := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		done <- connectFD(fd, sa)
	}()
	thread := <-tid
	// Signal the connecting thread (SIGURG: the runtime's own preemption
	// signal, which it ignores otherwise) until the connect has been
	// pending a while, then make room in the queue.
	stopSignals := time.After(300 * time.Millisecond)
signal:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("connectFD: got %v, want nil", err)
			}
			t.Skip("the connect did not wait for room in the accept queue: nothing to interrupt")
		case <-stopSignals:
			break signal
		case <-time.After(time.Millisecond):
			_ = unix.Tgkill(os.Getpid(), thread, unix.SIGURG)
		}
	}
	// Make room: accept (without blocking, so that no goroutine outlives
	// the test) until the connect returns.
	if err := unix.SetNonblock(lfd, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		if nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC); err == nil {
			unix.Close(nfd)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("connectFD: got %v, want nil", err)
			}
			return
		case <-deadline:
			t.Fatal("connectFD: not returned within 20s of room in the queue")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
