package ws

import (
	"bytes"
	"errors"
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

// refParse is FuzzParse's reference: gobwas/ws reads the frame headers
// (ws.ReadHeader) and checks them (ws.CheckHeader, with the fragmentation
// state), and the payloads are unmasked with ws.Cipher and reassembled
// here. It returns the messages and control frames a conforming parser
// delivers, and whether the input has a violation (complete says whether
// the input ended on a frame boundary or after a close frame). The
// documented normalisations, where this server is stricter or newer than
// gobwas: binary messages are refused (text-only protocol); a control
// frame must encode its length in the 7-bit field (RFC 6455 §5.2, minimal
// encoding); close codes 1012-1014 (IANA-registered since the RFC) are
// valid and codes from 5000 are not; a close reason's UTF-8 is not the
// parser's to check.
func refParse(data []byte, server bool, limit int) (out []parsed, violation, complete bool) {
	r := bytes.NewReader(data)
	state := gws.StateClientSide
	if server {
		state = gws.StateServerSide
	}
	var msg []byte
	for {
		at := len(data) - r.Len()
		if r.Len() == 0 {
			return out, false, true
		}
		h, err := gws.ReadHeader(r)
		if err != nil {
			// A length with its most significant bit set is a violation;
			// anything else is a header cut short.
			return out, errors.Is(err, gws.ErrHeaderLengthMSB), false
		}
		if gws.CheckHeader(h, state) != nil {
			return out, true, false
		}
		switch {
		case h.OpCode == gws.OpBinary:
			return out, true, false
		case h.OpCode.IsControl() && data[at+1]&0x7f > 125:
			return out, true, false
		case !h.OpCode.IsControl() && int64(len(msg))+h.Length > int64(limit):
			return out, true, false
		}
		if int64(r.Len()) < h.Length {
			return out, false, false
		}
		payload := make([]byte, h.Length)
		_, _ = r.Read(payload)
		if h.Masked {
			gws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case gws.OpText, gws.OpContinuation:
			msg = append(msg, payload...)
			if !h.Fin {
				state = state.Set(gws.StateFragmented)
				continue
			}
			state = state.Clear(gws.StateFragmented)
			out = append(out, parsed{opText, string(msg)})
			msg = nil
		case gws.OpClose:
			if len(payload) == 1 {
				return out, true, false
			}
			if len(payload) >= 2 {
				code, _ := gws.ParseCloseFrameDataUnsafe(payload)
				valid := gws.CheckCloseFrameData(code, "") == nil
				if code >= 1012 && code <= 1014 {
					valid = true
				}
				if code >= 5000 {
					valid = false
				}
				if !valid {
					return out, true, false
				}
			}
			return append(out, parsed{opClose, string(payload)}), false, true
		default:
			out = append(out, parsed{byte(h.OpCode), string(payload)})
		}
	}
}

// feedSteps feeds a copy of data to p in chunks of step bytes and returns
// what it delivered and its error.
func feedSteps(p *parser, data []byte, step int) ([]parsed, error) {
	data = bytes.Clone(data)
	var out []parsed
	var first error
	for len(data) > 0 {
		k := min(step, len(data))
		err := p.feed(data[:k], func(op byte, payload []byte) bool {
			out = append(out, parsed{op, string(payload)})
			return true
		})
		if err != nil && first == nil {
			first = err
		}
		data = data[k:]
	}
	return out, first
}

// FuzzParse checks the frame parser, the first code to see an attacker's
// bytes: it keeps its limits, the same bytes fed whole or in any chunks give
// the same messages and the same error, and the messages are those of a
// reference reader built on gobwas/ws (refParse).
func FuzzParse(f *testing.F) {
	const limit = 256
	seeds := [][]byte{
		compile(f, gws.NewTextFrame([]byte("hello")), true),
		compile(f, gws.NewTextFrame(bytes.Repeat([]byte("x"), 300)), true),
		compile(f, gws.NewFrame(gws.OpText, false, []byte("a")), true),
		compile(f, gws.NewFrame(gws.OpContinuation, true, []byte("b")), true),
		compile(f, gws.NewPingFrame([]byte("p")), true),
		compile(f, gws.NewCloseFrame(gws.NewCloseFrameBody(1000, "bye")), true),
		compile(f, gws.NewCloseFrame(gws.NewCloseFrameBody(1012, "restart")), true),
		compile(f, gws.NewBinaryFrame([]byte{1}), true),
		compile(f, gws.NewTextFrame([]byte("unmasked")), false),
		PrepareText([]byte(`{"type":"event"}`)),
		append(append(compile(f, gws.NewFrame(gws.OpText, false, []byte(`{"type":`)), true),
			compile(f, gws.NewPingFrame([]byte("between")), true)...),
			compile(f, gws.NewFrame(gws.OpContinuation, true, []byte(`"req"}`)), true)...),
		append(compile(f, gws.NewTextFrame([]byte("a")), true), compile(f, gws.NewTextFrame([]byte("b")), true)...),
	}
	for _, s := range seeds {
		f.Add(s, uint8(7), true)
		f.Add(s, uint8(0), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8, server bool) {
		p := &parser{server: server, max: limit}
		got, err := feedSteps(p, data, int(step)+1)
		for _, m := range got {
			switch m.op {
			case opText:
				if len(m.payload) > limit {
					t.Fatalf("delivered a %d-byte message, limit %d", len(m.payload), limit)
				}
			case opPing, opPong, opClose:
				if len(m.payload) > maxControlPayload {
					t.Fatalf("delivered a %d-byte control frame", len(m.payload))
				}
			default:
				t.Fatalf("delivered opcode %#x", m.op)
			}
		}
		if _, ok := err.(*closeError); err != nil && !ok {
			t.Fatalf("got error %T, want *closeError", err)
		}
		if len(p.partial) > limit+maxHeaderLen || p.msgLen() > limit {
			t.Fatalf("parser holds %d+%d bytes, limit %d", len(p.partial), p.msgLen(), limit)
		}

		// Chunk invariance: all at once, one byte at a time.
		for _, n := range []int{len(data) + 1, 1} {
			again, err2 := feedSteps(&parser{server: server, max: limit}, data, n)
			if !equalParsed(again, got) || err2 != err {
				t.Fatalf("in chunks of %d: got %q, %v; in chunks of %d: %q, %v", n, again, err2, int(step)+1, got, err)
			}
		}

		// The reference reader.
		want, violation, complete := refParse(data, server, limit)
		switch {
		case err == nil && violation:
			t.Fatalf("parser accepted what the reference refuses; delivered %q, reference %q", got, want)
		case err == nil && !equalParsed(got, want):
			t.Fatalf("parser delivered %q, reference %q", got, want)
		case err != nil && complete:
			t.Fatalf("parser refused (%v) what the reference accepts: %q", err, want)
		case err != nil && (len(got) > len(want) || !equalParsed(got, want[:len(got)])):
			t.Fatalf("before its error (%v) the parser delivered %q, reference %q", err, got, want)
		}
	})
}
