package apps

import (
	"slices"
	"strings"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

func TestResolveStream(t *testing.T) {
	tests := []struct {
		in, canon, scope, reason string
	}{
		{in: "audio", canon: "audio", scope: "stream:audio"},
		{in: "Audio?Rate=16000&format=PCM16", canon: "audio?format=pcm16&rate=16000", scope: "stream:audio"},
		{in: "transcript?lang=en-US", canon: "transcript?lang=en-us", scope: "stream:transcript"},
		{in: "transcript?colour=red", reason: protocol.StreamRejectInvalid},
		{in: "telepathy", reason: protocol.StreamRejectUnknown},
		{in: "a b", reason: protocol.StreamRejectInvalid},
		{in: "*", reason: protocol.StreamRejectInvalid},
	}
	for _, tt := range tests {
		canon, k, rej := resolveStream(tt.in)
		switch {
		case tt.reason != "":
			if rej == nil || rej.Reason != tt.reason || rej.Stream != tt.in || rej.Message == "" {
				t.Errorf("resolveStream(%q) = %q, %+v; want rejection %s", tt.in, canon, rej, tt.reason)
			}
		case rej != nil || canon != tt.canon || k.scope != tt.scope:
			t.Errorf("resolveStream(%q) = %q, %q, %+v; want %q, %q", tt.in, canon, k.scope, rej, tt.canon, tt.scope)
		}
	}
}

// TestStreamCatalogue: every stream's scope is a stream scope an app may
// be registered with, and media streams are never stateful.
func TestStreamCatalogue(t *testing.T) {
	for name, k := range streamKinds {
		if !strings.HasPrefix(k.scope, StreamScopePrefix) || !validWord(k.scope) {
			t.Errorf("%s: scope %q", name, k.scope)
		}
		if k.media && k.stateful {
			t.Errorf("%s: media and stateful", name)
		}
		if c, _, err := protocol.CanonicalStream(name); err != nil || c != name {
			t.Errorf("%s: not a canonical stream name", name)
		}
	}
}

func TestTrimHistory(t *testing.T) {
	ev := func(seq uint64, size int) protocol.StreamEvent {
		return protocol.StreamEvent{Seq: seq, Data: []byte(strings.Repeat("x", size))}
	}
	seqs := func(h []protocol.StreamEvent) (out []uint64) {
		for _, e := range h {
			out = append(out, e.Seq)
		}
		return out
	}
	tests := []struct {
		name string
		h    []protocol.StreamEvent
		n    int
		want []uint64
	}{
		{"under both", []protocol.StreamEvent{ev(1, 10), ev(2, 10)}, 3, []uint64{1, 2}},
		{"count", []protocol.StreamEvent{ev(1, 10), ev(2, 10), ev(3, 10)}, 2, []uint64{2, 3}},
		{"bytes", []protocol.StreamEvent{ev(1, maxHistoryBytes/2), ev(2, maxHistoryBytes/2), ev(3, 10)}, 10, []uint64{2, 3}},
		{"one huge kept", []protocol.StreamEvent{ev(1, 10), ev(2, maxHistoryBytes+1)}, 10, []uint64{2}},
	}
	for _, tt := range tests {
		if got := seqs(trimHistory(tt.h, tt.n)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: kept %v, want %v", tt.name, got, tt.want)
		}
	}
}
