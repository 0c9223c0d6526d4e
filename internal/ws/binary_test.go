package ws

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
)

// binaryHandler is a testHandler that echoes binary messages as binary
// frames, with a marker byte in front.
type binaryHandler struct{ *testHandler }

func (h binaryHandler) OnBinary(c *Conn, payload []byte) {
	_ = c.Send(PrepareBinary(append([]byte{0xEE}, payload...)))
}

func startBinaryServer(t *testing.T, cfg Config, h Handler) string {
	t.Helper()
	tr := New(cfg)
	if err := tr.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = tr.Upgrade(w, r, "junction.v1", h)
	}))
	t.Cleanup(func() {
		srv.Close()
		_ = tr.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func readBinary(t *testing.T, c *client) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if op != gws.OpBinary {
		t.Fatalf("got opcode %v %q, want binary", op, b)
	}
	return b
}

// TestBinaryMessages: a BinaryHandler with MaxBinaryBytes gets binary
// messages (whole and fragmented, in order with text), and one over the
// limit closes with 1009; without the limit, or with a plain Handler,
// binary closes with 1003 as before.
func TestBinaryMessages(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		t.Run("delivered", func(t *testing.T) {
			h := binaryHandler{newTestHandler(true)}
			c := dial(t, startBinaryServer(t, Config{Kind: kind, MaxBinaryBytes: 100}, h))
			if err := wsutil.WriteClientBinary(c.Conn, []byte{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			c.send(t, "text between")
			for _, f := range []gws.Frame{
				gws.NewFrame(gws.OpBinary, false, []byte{4, 5}),
				gws.NewFrame(gws.OpContinuation, true, []byte{6}),
			} {
				if err := gws.WriteFrame(c.Conn, gws.MaskFrame(f)); err != nil {
					t.Fatal(err)
				}
			}
			if got := readBinary(t, c); !bytes.Equal(got, []byte{0xEE, 1, 2, 3}) {
				t.Fatalf("first echo %v", got)
			}
			if got := c.recv(t); got != "text between" {
				t.Fatalf("text echo %q", got)
			}
			if got := readBinary(t, c); !bytes.Equal(got, []byte{0xEE, 4, 5, 6}) {
				t.Fatalf("fragmented echo %v", got)
			}
			// Exactly the limit passes; one more byte, in fragments, closes 1009.
			if err := wsutil.WriteClientBinary(c.Conn, make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			if got := readBinary(t, c); len(got) != 101 {
				t.Fatalf("echo of a message at the limit: %d bytes", len(got))
			}
			for _, f := range []gws.Frame{
				gws.NewFrame(gws.OpBinary, false, make([]byte, 60)),
				gws.NewFrame(gws.OpContinuation, true, make([]byte, 41)),
			} {
				if err := gws.WriteFrame(c.Conn, gws.MaskFrame(f)); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.readClose(t); got != protocol.CloseTooBig {
				t.Fatalf("oversized binary: close %d, want 1009", got)
			}
			if ev := h.waitClose(t); ev.code != protocol.CloseTooBig || ev.reason != "binary message too big" {
				t.Fatalf("OnClose %d %q", ev.code, ev.reason)
			}
		})
		t.Run("text limit unchanged", func(t *testing.T) {
			h := binaryHandler{newTestHandler(true)}
			c := dial(t, startBinaryServer(t, Config{Kind: kind, MaxMessageBytes: 1000, MaxBinaryBytes: 10}, h))
			c.send(t, strings.Repeat("x", 500))
			if got := c.recv(t); len(got) != 500 {
				t.Fatalf("text echo of %d bytes", len(got))
			}
		})
		for _, tt := range []struct {
			name string
			cfg  Config
			h    Handler
		}{
			{"no limit", Config{Kind: kind}, binaryHandler{newTestHandler(false)}},
			{"plain handler", Config{Kind: kind, MaxBinaryBytes: 100}, newTestHandler(false)},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, startBinaryServer(t, tt.cfg, tt.h))
				if err := wsutil.WriteClientBinary(c.Conn, []byte{1}); err != nil {
					t.Fatal(err)
				}
				if got := c.readClose(t); got != protocol.CloseUnsupportedData {
					t.Fatalf("close %d, want 1003", got)
				}
			})
		}
	})
}
