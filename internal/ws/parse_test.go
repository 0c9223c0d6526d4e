package ws

import (
	"bytes"
	"testing"

	gws "github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// compile returns the wire bytes of f, masked when mask is set.
func compile(tb testing.TB, f gws.Frame, mask bool) []byte {
	tb.Helper()
	if mask {
		f = gws.MaskFrameWith(f, [4]byte{1, 2, 3, 4})
	}
	b, err := gws.CompileFrame(f)
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	return b
}

type parsed struct {
	op      byte
	payload string
}

// parseAll feeds data to a parser in chunks of size step.
func parseAll(p *parser, data []byte, step int) ([]parsed, error) {
	var out []parsed
	for len(data) > 0 {
		n := min(step, len(data))
		chunk := append([]byte(nil), data[:n]...)
		data = data[n:]
		err := p.feed(chunk, func(op byte, payload []byte) bool {
			out = append(out, parsed{op, string(payload)})
			return true
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func TestParser(t *testing.T) {
	text := func(s string) gws.Frame { return gws.NewTextFrame([]byte(s)) }
	tests := []struct {
		name     string
		server   bool
		frames   []gws.Frame
		want     []parsed
		wantCode int
	}{
		{
			name:   "text",
			server: true,
			frames: []gws.Frame{text("hi"), text("")},
			want:   []parsed{{opText, "hi"}, {opText, ""}},
		},
		{
			name:   "client role reads unmasked",
			frames: []gws.Frame{text("hi")},
			want:   []parsed{{opText, "hi"}},
		},
		{
			name:   "fragments with ping between",
			server: true,
			frames: []gws.Frame{
				gws.NewFrame(gws.OpText, false, []byte("a")),
				gws.NewFrame(gws.OpPing, true, []byte("p")),
				gws.NewFrame(gws.OpContinuation, true, []byte("b")),
			},
			want: []parsed{{opPing, "p"}, {opText, "ab"}},
		},
		{
			name:     "over limit after reassembly",
			server:   true,
			frames:   []gws.Frame{gws.NewFrame(gws.OpText, false, make([]byte, 60)), gws.NewFrame(gws.OpContinuation, true, make([]byte, 60))},
			wantCode: protocol.CloseTooBig,
		},
		{
			name:     "close with invalid code",
			server:   true,
			frames:   []gws.Frame{gws.NewCloseFrame(gws.NewCloseFrameBody(1005, ""))},
			wantCode: protocol.CloseProtocolError,
		},
		{
			name:     "text inside fragmented message",
			server:   true,
			frames:   []gws.Frame{gws.NewFrame(gws.OpText, false, []byte("a")), text("b")},
			wantCode: protocol.CloseProtocolError,
		},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 1 << 20} {
			p := &parser{server: tt.server, max: 100}
			var data []byte
			for _, f := range tt.frames {
				data = append(data, compile(t, f, tt.server)...)
			}
			got, err := parseAll(p, data, step)
			code := 0
			if ce, ok := err.(*closeError); ok {
				code = ce.code
			} else if err != nil {
				t.Fatalf("%s/step %d: got error %v, want a *closeError", tt.name, step, err)
			}
			if code != tt.wantCode {
				t.Fatalf("%s/step %d: got close code %d, want %d", tt.name, step, code, tt.wantCode)
			}
			if tt.wantCode == 0 && !equalParsed(got, tt.want) {
				t.Fatalf("%s/step %d: got %v, want %v", tt.name, step, got, tt.want)
			}
			if tt.wantCode == 0 && (p.partial != nil || p.msg != nil) {
				t.Fatalf("%s/step %d: parser keeps buffers after complete input", tt.name, step)
			}
		}
	}
}

func equalParsed(a, b []parsed) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParse(f *testing.F) {
	const limit = 256
	seeds := [][]byte{
		compile(f, gws.NewTextFrame([]byte("hello")), true),
		compile(f, gws.NewTextFrame(bytes.Repeat([]byte("x"), 300)), true),
		compile(f, gws.NewFrame(gws.OpText, false, []byte("a")), true),
		compile(f, gws.NewFrame(gws.OpContinuation, true, []byte("b")), true),
		compile(f, gws.NewPingFrame([]byte("p")), true),
		compile(f, gws.NewCloseFrame(gws.NewCloseFrameBody(1000, "bye")), true),
		compile(f, gws.NewBinaryFrame([]byte{1}), true),
		compile(f, gws.NewTextFrame([]byte("unmasked")), false),
		PrepareText([]byte(`{"type":"event"}`)),
	}
	for _, s := range seeds {
		f.Add(s, uint8(7), true)
		f.Add(s, uint8(0), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8, server bool) {
		p := &parser{server: server, max: limit}
		n := int(step) + 1
		for len(data) > 0 {
			k := min(n, len(data))
			err := p.feed(data[:k], func(op byte, payload []byte) bool {
				switch op {
				case opText:
					if len(payload) > limit {
						t.Fatalf("delivered a %d-byte message, limit %d", len(payload), limit)
					}
				case opPing, opPong, opClose:
					if len(payload) > maxControlPayload {
						t.Fatalf("delivered a %d-byte control frame", len(payload))
					}
				default:
					t.Fatalf("delivered opcode %#x", op)
				}
				return true
			})
			if _, ok := err.(*closeError); err != nil && !ok {
				t.Fatalf("got error %T, want *closeError", err)
			}
			data = data[k:]
		}
		if len(p.partial) > limit+maxHeaderLen || len(p.msg) > limit {
			t.Fatalf("parser holds %d+%d bytes, limit %d", len(p.partial), len(p.msg), limit)
		}
	})
}
