package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestCanonicalStream(t *testing.T) {
	tests := []struct {
		in, want, name string
		err            bool
	}{
		{in: "audio", want: "audio", name: "audio"},
		{in: "Transcript?Lang=en-US", want: "transcript?lang=en-us", name: "transcript"},
		{in: "location?b=2&a=1", want: "location?a=1&b=2", name: "location"},
		{in: "x?a=1&a=2", err: true},
		{in: "", err: true},
		{in: "a b", err: true},
		{in: "audio?", err: true},
		{in: "audio?k", err: true},
		{in: "audio?k=", err: true},
		{in: "audio?k=v&", err: true},
		{in: "au.dio", err: true},
		{in: "a?a=1&b=2&c=3&d=4&e=5", err: true},
		{in: "a?" + string(bytes.Repeat([]byte("k"), 70)) + "=1", err: true},
	}
	for _, tt := range tests {
		got, name, err := CanonicalStream(tt.in)
		if (err != nil) != tt.err || got != tt.want || name != tt.name {
			t.Errorf("CanonicalStream(%q) = %q, %q, %v; want %q, %q, error %v", tt.in, got, name, err, tt.want, tt.name, tt.err)
		}
		if err == nil {
			again, _, _ := CanonicalStream(got)
			if again != got {
				t.Errorf("CanonicalStream(%q) = %q, not a fixed point", got, again)
			}
		}
	}
}

func TestStreamFrame(t *testing.T) {
	b := AppendStreamFrame(nil, "audio", 0x01020304, []byte{9, 8, 7})
	want := []byte{1, 5, 'a', 'u', 'd', 'i', 'o', 1, 2, 3, 4, 9, 8, 7}
	if !bytes.Equal(b, want) {
		t.Fatalf("AppendStreamFrame = %v, want %v", b, want)
	}
	f, err := ParseStreamFrame(b)
	if err != nil || f.Stream != "audio" || f.Seq != 0x01020304 || !bytes.Equal(f.Payload, []byte{9, 8, 7}) {
		t.Fatalf("ParseStreamFrame = %+v, %v", f, err)
	}
	bad := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrStreamFrameShort},
		{"version", []byte{2, 1, 'a', 0, 0, 0, 0}, ErrStreamFrameVersion},
		{"no id", []byte{1, 0, 0, 0, 0, 0}, ErrStreamFrameID},
		{"cut id", []byte{1, 5, 'a', 'u'}, ErrStreamFrameShort},
		{"cut seq", []byte{1, 1, 'a', 0, 0}, ErrStreamFrameShort},
		{"upper case id", AppendStreamFrame(nil, "Audio", 1, nil), ErrStreamFrameID},
		{"unsorted params", AppendStreamFrame(nil, "a?b=1&a=1", 1, nil), ErrStreamFrameID},
		{"json as binary", []byte(`{"type":"req"}`), ErrStreamFrameVersion},
	}
	for _, tt := range bad {
		if _, err := ParseStreamFrame(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseStreamFrame = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzParseStreamFrame: the decoder never panics, accepts only frames
// whose id is canonical, and what it accepts re-encodes to the same bytes.
func FuzzParseStreamFrame(f *testing.F) {
	f.Add(AppendStreamFrame(nil, "audio", 7, []byte("pcm")))
	f.Add(AppendStreamFrame(nil, "transcript?lang=en-us", 1, nil))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte(`{"type":"req","id":"1","method":"sys.ping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseStreamFrame(b)
		if err != nil {
			return
		}
		if canon, _, cerr := CanonicalStream(fr.Stream); cerr != nil || canon != fr.Stream {
			t.Fatalf("accepted a non-canonical id %q", fr.Stream)
		}
		if again := AppendStreamFrame(nil, fr.Stream, fr.Seq, fr.Payload); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %v, want %v", again, b)
		}
	})
}
