package client

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// TestClientBinary: with an OnBinary handler, binary messages reach it in
// arrival order with the events (one dispatcher), each handler in
// registration order; SendBinary writes one binary message per call, in
// order with the frames sent around it, and refuses one over the welcome's
// limit. (The real hub's side: cmd/junction TestAppSDKStreams.)
func TestClientBinary(t *testing.T) {
	ts := newTestServer(t)
	ts.maxFrameBytes = 1024
	c := New(ts.options())
	var mu sync.Mutex
	var got []string
	c.OnEvent("tick", func(f *protocol.Frame) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "tick:"+string(f.Data))
	})
	c.OnBinary(func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("bin1:%x", b))
	})
	c.OnBinary(func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("bin2:%d", len(b)))
	})
	if err := c.Connect(t.Context()); err != nil {
		t.Fatalf("Connect: got error %v, want nil", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sc := ts.nextConn(t)

	sc.send(event("tick", 0))
	sc.sendBinary([]byte{1, 2, 3})
	sc.sendBinary(nil)
	sc.send(event("tick", 1))
	want := []string{"tick:0", "bin1:010203", "bin2:3", "bin1:", "bin2:0", "tick:1"}
	eventually(t, "events and binary messages dispatched", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	mu.Lock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dispatched %v, want %v", got, want)
	}
	mu.Unlock()

	// Sending: the caller's slice is copied (the writer masks in place).
	payload := protocol.AppendStreamFrame(nil, "audio", 7, []byte("pcm"))
	keep := bytes.Clone(payload)
	if err := c.Send(t.Context(), &protocol.Frame{Type: protocol.TypeEvent, Event: "before"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendBinary(t.Context(), payload); err != nil {
		t.Fatalf("SendBinary: got error %v, want nil", err)
	}
	if err := c.Send(t.Context(), &protocol.Frame{Type: protocol.TypeEvent, Event: "after"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload, keep) {
		t.Fatal("SendBinary modified the caller's slice")
	}
	next := func() *protocol.Frame {
		t.Helper()
		select {
		case f := <-sc.events:
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("the server got no event")
		}
		return nil
	}
	if f := next(); f.Event != "before" {
		t.Fatalf("first event %q, want before", f.Event)
	}
	select {
	case b := <-sc.binaries:
		f, err := protocol.ParseStreamFrame(b)
		if err != nil || f.Stream != "audio" || f.Seq != 7 || string(f.Payload) != "pcm" {
			t.Fatalf("binary message %x: %+v, %v", b, f, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server got no binary message")
	}
	if f := next(); f.Event != "after" {
		t.Fatalf("second event %q, want after", f.Event)
	}

	var pe *protocol.Error
	if err := c.SendBinary(t.Context(), make([]byte, 1025)); !errors.As(err, &pe) || pe.Code != protocol.CodeTooLarge {
		t.Fatalf("SendBinary over the limit: got %v, want too_large", err)
	}
}
