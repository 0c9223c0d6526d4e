package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/junctionhq/junction/internal/hub"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/appsdk"
	"github.com/junctionhq/junction/protocol"
)

// Issue 13 items 9-10 end to end: the SDK's typed session API against the
// real server and a simulated device (a real client): device streams
// (transcript events and audio media frames reach OnStreamEvent and
// OnMedia, before and after a reattach, with SetStreams numbering its
// updates), outputs (a request shown on the device, hidden by its TTL;
// cancelled; rejected), settings (OnSettings) and tools (HandleTool).

// recv waits for the next value of ch.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// TestAppSDKStreams: see the file's comment.
func TestAppSDKStreams(t *testing.T) {
	proxy := newCutProxy(t)
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
		c.Apps.PublicURL = proxy.url()
	})
	addr := strings.TrimPrefix(m.URL(), "http://")
	proxy.target.Store(&addr)
	host := newSDKHost(t)
	const id = "com.example.livecaptions"
	lookupTool := map[string]any{"name": "lookup", "description": "no handler in the backend", "params": map[string]any{"type": "object"}}
	created := createApp(t, m, map[string]any{"id": id, "name": "Live captions", "kind": "foreground", "internal": true,
		"scopes":         []string{"read", "write", "stream:transcript", "stream:audio", protocol.ScopeOutput},
		"webhookUrl":     host.srv.URL + "/junction",
		"settingsSchema": langSchema, "tools": []any{translateTool, lookupTool}})
	user := mintToken(t, m, "u1", "u1-phone", "phone", "read", "write", protocol.ScopeOutput)
	apiJSON(t, m, user, "PUT", "/api/v1/apps/"+id+"/install",
		map[string]any{"scopes": []string{"read", "stream:transcript", "stream:audio", protocol.ScopeOutput}}, 200, nil)
	b := startSDKApp(t, m, host, created, appsdk.NewMemoryResumeStore())
	b.app.HandleTool("translate", func(ctx context.Context, s *appsdk.Session, call protocol.ToolInvoke) (any, error) {
		var args struct{ Text, To string }
		if err := json.Unmarshal(call.Args, &args); err != nil {
			return nil, err
		}
		if args.To == "xx" {
			return nil, protocol.Errorf(protocol.CodeBadRequest, "no language xx")
		}
		return map[string]any{"text": "[" + args.To + "] " + args.Text, "user": call.UserID, "session": call.SessionID, "handle": s.ID()}, nil
	})

	dev := dialDevice(t, m, "u1", "u1-glasses")
	shows := make(chan string, 16) // "show <surface> <requestId> <content>" and "clear <surface>"
	dev.c.OnEvent(protocol.EventOutputShow, func(f *protocol.Frame) {
		var sh protocol.OutputShow
		if err := json.Unmarshal(f.Data, &sh); err != nil {
			t.Errorf("output.show %s: %v", f.Data, err)
		}
		shows <- fmt.Sprintf("show %s %s %s", sh.Surface, sh.RequestID, sh.Content)
	})
	dev.c.OnEvent(protocol.EventOutputClear, func(f *protocol.Frame) {
		var cl protocol.OutputClear
		_ = json.Unmarshal(f.Data, &cl)
		shows <- "clear " + cl.Surface
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := dev.start(t, id, "display", "microphone")
	s := b.nextSession(t)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)

	// Handlers are the session's: registered once, they serve every
	// connection of it.
	events := make(chan protocol.StreamEvent, 16)
	s.OnStreamEvent(func(_ *appsdk.Session, ev protocol.StreamEvent) { events <- ev })
	media := make(chan protocol.StreamFrame, 16)
	s.OnMedia(func(_ *appsdk.Session, f protocol.StreamFrame) { media <- f })
	settings := make(chan protocol.AppSettingsChanged, 4)
	s.OnSettings(func(_ *appsdk.Session, ch protocol.AppSettingsChanged) { settings <- ch })

	// 1. Subscribe: granted and rejected with the reason.
	set, err := s.SetStreams(ctx, "transcript?lang=en-US", "audio", "battery")
	if err != nil {
		t.Fatalf("SetStreams: %v", err)
	}
	if set.Seq != 1 || set.Stale || strings.Join(set.Granted, ",") != "audio,transcript?lang=en-us" ||
		len(set.Rejected) != 1 || set.Rejected[0].Stream != "battery" || set.Rejected[0].Reason != protocol.StreamRejectMissingScope ||
		set.Rejected[0].Scope != "stream:battery" {
		t.Fatalf("SetStreams answered %+v", set)
	}

	// 2. The device publishes: transcript events and audio frames reach the
	// SDK's callbacks, in order.
	publish := func(text string) protocol.StreamPublished {
		t.Helper()
		var pub protocol.StreamPublished
		if err := dev.c.Call(ctx, "streams.publish", protocol.StreamPublishParams{Stream: "transcript?lang=en-US",
			Data: json.RawMessage(`{"text":"` + text + `"}`)}, &pub); err != nil {
			t.Fatalf("streams.publish: %v", err)
		}
		return pub
	}
	sendAudio := func(seq uint32) {
		t.Helper()
		if err := dev.c.SendBinary(ctx, protocol.AppendStreamFrame(nil, "audio", seq, []byte(fmt.Sprintf("pcm-%d", seq)))); err != nil {
			t.Fatalf("SendBinary: %v", err)
		}
	}
	// The welcome names the binary limit (hub.max_binary_bytes, 32 KiB):
	// a bigger frame is refused by the client, the connection stays.
	if max := dev.c.Welcome().Limits.MaxBinaryBytes; max != hub.DefaultMaxBinaryBytes {
		t.Fatalf("welcome's maxBinaryBytes %d, want %d", max, hub.DefaultMaxBinaryBytes)
	}
	var tooBig *protocol.Error
	if err := dev.c.SendBinary(ctx, make([]byte, hub.DefaultMaxBinaryBytes+1)); !errors.As(err, &tooBig) || tooBig.Code != protocol.CodeTooLarge {
		t.Fatalf("SendBinary over the welcome's binary limit: %v, want too_large", err)
	}
	if pub := publish("hello"); pub.Delivered != 1 || pub.Seq != 1 {
		t.Fatalf("published %+v, want delivered to the SDK's connection", pub)
	}
	for i := range uint32(3) {
		sendAudio(i + 1)
	}
	if ev := recv(t, "stream.event", events); ev.Stream != "transcript?lang=en-us" || ev.Seq != 1 || string(ev.Data) != `{"text":"hello"}` {
		t.Fatalf("OnStreamEvent got %+v", ev)
	}
	for i := range uint32(3) {
		f := recv(t, "media frame", media)
		if f.Stream != "audio" || f.Seq != i+1 || string(f.Payload) != fmt.Sprintf("pcm-%d", i+1) {
			t.Fatalf("OnMedia frame %d: %+v", i, f)
		}
	}

	// 3. The SDK's connection is cut: it reattaches, Junction kept the
	// set, the handlers still run, and the next update continues the seq.
	if n := proxy.cut(); n != 1 {
		t.Fatalf("cut %d connections, want the app's one", n)
	}
	dev.wait(t, s.ID(), protocol.AppStateTransportDown)
	dev.wait(t, s.ID(), protocol.AppStateRunning)
	eventually(t, "the SDK said hello again", func() bool { return s.Reattaches() == 1 })
	if h := s.Hello(); strings.Join(h.Subscriptions, ",") != "audio,transcript?lang=en-us" || h.SubscriptionSeq != 1 {
		t.Fatalf("hello after the reattach: subscriptions %v seq %d, want the kept set", h.Subscriptions, h.SubscriptionSeq)
	}
	publish("again")
	if ev := recv(t, "stream.event after the reattach", events); ev.Seq != 2 || string(ev.Data) != `{"text":"again"}` {
		t.Fatalf("after the reattach OnStreamEvent got %+v", ev)
	}
	sendAudio(4)
	if f := recv(t, "media frame after the reattach", media); f.Seq != 4 || string(f.Payload) != "pcm-4" {
		t.Fatalf("after the reattach OnMedia got %+v", f)
	}
	if set, err := s.SetStreams(ctx, "transcript?lang=en-US"); err != nil || set.Seq != 2 || set.Stale ||
		strings.Join(set.Streams, ",") != "transcript?lang=en-us" {
		t.Fatalf("SetStreams after the reattach: %+v, %v; want seq 2", set, err)
	}

	// 4. Outputs: without declared surfaces the request is refused by an
	// answer; then shown on the device and hidden by its TTL.
	var pe *protocol.Error
	if _, err := s.Output(ctx, protocol.OutputRequestParams{Surface: "main", Content: json.RawMessage(`{"text":"x"}`)}); !errors.As(err, &pe) || pe.Code != protocol.CodeUnavailable {
		t.Fatalf("Output before the device declared: %v, want unavailable", err)
	}
	if err := dev.c.Call(ctx, "output.declare", protocol.OutputDeclareParams{Surfaces: []protocol.OutputSurface{{Name: "main"}}}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(ctx, protocol.OutputRequestParams{Surface: "main", Content: json.RawMessage(`{"text":"hello"}`), TTLMs: 200})
	if err != nil {
		t.Fatalf("Output: %v", err)
	}
	if out.Priority() != "foreground" || !strings.HasPrefix(out.ID(), "o") {
		t.Fatalf("handle id %q priority %q", out.ID(), out.Priority())
	}
	if got := recv(t, "output.show", shows); got != "show main "+out.ID()+` {"text":"hello"}` {
		t.Fatalf("device got %q", got)
	}
	if got := recv(t, "output.clear", shows); got != "clear main" {
		t.Fatalf("device got %q after the TTL, want the clear", got)
	}
	final, err := out.Wait(ctx)
	if err != nil || final.Kind != "hidden" || final.Reason != "expired" || !final.Final {
		t.Fatalf("final event %+v, %v; want hidden expired", final, err)
	}
	var kinds []string
	for st := range out.Events() {
		kinds = append(kinds, strings.TrimSpace(st.Kind+" "+st.Reason))
	}
	if strings.Join(kinds, ",") != "shown,hidden expired" {
		t.Fatalf("events %v, want shown then hidden expired", kinds)
	}
	if oc, ok := out.Outcome(); !ok || oc.Kind != "shown" {
		t.Fatalf("outcome %+v %v, want shown", oc, ok)
	}
	// Cancelled while shown.
	out2, err := s.Output(ctx, protocol.OutputRequestParams{ID: "c2", Surface: "main", Content: json.RawMessage(`"bye"`)})
	if err != nil || out2.ID() != "c2" {
		t.Fatalf("Output c2: %v", err)
	}
	if got := recv(t, "output.show", shows); got != `show main c2 "bye"` {
		t.Fatalf("device got %q", got)
	}
	eventually(t, "c2 shown", func() bool { oc, ok := out2.Outcome(); return ok && oc.Kind == "shown" })
	if found, err := out2.Cancel(ctx); err != nil || !found {
		t.Fatalf("Cancel: %v, %v", found, err)
	}
	if final, err := out2.Wait(ctx); err != nil || final.Kind != "hidden" || final.Reason != "cleared" {
		t.Fatalf("after Cancel %+v, %v; want hidden cleared", final, err)
	}
	if got := recv(t, "output.clear", shows); got != "clear main" {
		t.Fatalf("device got %q after the cancel", got)
	}
	// Rejected by the arbiter: an event, not an error.
	out3, err := s.Output(ctx, protocol.OutputRequestParams{Surface: "nope", Content: json.RawMessage(`1`)})
	if err != nil {
		t.Fatalf("Output on an unknown surface: %v", err)
	}
	if final, err := out3.Wait(ctx); err != nil || final.Kind != "rejected" || final.Reason != "unknown_surface" {
		t.Fatalf("unknown surface: %+v, %v", final, err)
	}
	if oc, _ := out3.Outcome(); oc.Kind != "rejected" {
		t.Fatalf("outcome %+v, want rejected", oc)
	}

	// 5. Settings reach OnSettings.
	apiJSON(t, m, user, "PUT", "/api/v1/apps/"+id+"/settings", map[string]any{"values": map[string]any{"lang": "fr"}, "version": 0}, 200, nil)
	if ch := recv(t, "settings.changed", settings); ch.Version != 1 || string(ch.Values) != `{"lang":"fr"}` || ch.SessionID != s.ID() {
		t.Fatalf("OnSettings got %+v", ch)
	}

	// 6. Tools: a device's tool.call reaches the handler over the
	// session's socket; its error is the caller's; a tool without a
	// handler answers not_found.
	phone := dialClient(t, m, "u1", "u1-phone", "phone", "read", protocol.ScopeTools)
	var res protocol.ToolCallResult
	if err := phone.Call(ctx, "tool.call", protocol.ToolCallParams{AppID: id, Tool: "translate", Args: json.RawMessage(`{"text":"hi","to":"fr"}`)}, &res); err != nil {
		t.Fatalf("tool.call: %v", err)
	}
	var result map[string]string
	if err := json.Unmarshal(res.Result, &result); err != nil || res.Via != "socket" || result["text"] != "[fr] hi" ||
		result["user"] != s.UserID() || result["session"] != s.ID() || result["handle"] != s.ID() {
		t.Fatalf("tool.call answered %+v (%s)", res, res.Result)
	}
	if err := phone.Call(ctx, "tool.call", protocol.ToolCallParams{AppID: id, Tool: "translate", Args: json.RawMessage(`{"text":"hi","to":"xx"}`)}, nil); !errors.As(err, &pe) ||
		pe.Code != protocol.CodeBadRequest || pe.Details["via"] != "socket" {
		t.Fatalf("tool error: %v, want the handler's bad_request", err)
	}
	if err := phone.Call(ctx, "tool.call", protocol.ToolCallParams{AppID: id, Tool: "lookup"}, nil); !errors.As(err, &pe) || pe.Code != protocol.CodeNotFound {
		t.Fatalf("tool without a handler: %v, want not_found", err)
	}

	// 7. The session stops: nothing is left waiting.
	if _, err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	var stopped *appsdk.StoppedError
	if err := waitDone(t, s); !errors.As(err, &stopped) {
		t.Fatalf("after Stop: %v", err)
	}
	if _, err := s.SetStreams(ctx, "audio"); !errors.As(err, &stopped) {
		t.Fatalf("SetStreams on a stopped session: %v, want its StoppedError", err)
	}
}

// TestAppSDKStreamsGatewayRestart: the gateway restarts on the same data
// directory. The session survives (persisted) but its stream set does not:
// the SDK reattaches, sees a hello whose subscriptionSeq is below the one
// applied, and sets the last set again (a seq above it) without the app
// asking; the device's demand comes back and its transcript reaches the
// handler registered before the restart.
func TestAppSDKStreamsGatewayRestart(t *testing.T) {
	dir := t.TempDir()
	proxy := newCutProxy(t)
	configure := func(c *Config) { c.Apps.PublicURL = proxy.url() }
	m, _ := recoveryServer(t, dir, configure)
	addr := strings.TrimPrefix(m.URL(), "http://")
	proxy.target.Store(&addr)
	host := newSDKHost(t)
	const id = "com.example.sturdycaptions"
	created := createApp(t, m, map[string]any{"id": id, "name": id, "kind": "foreground", "internal": true,
		"scopes": []string{"read", "stream:transcript"}, "webhookUrl": host.srv.URL + "/junction"})
	apiJSON(t, m, mintToken(t, m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/"+id+"/install",
		map[string]any{"scopes": []string{"read", "stream:transcript"}}, 200, nil)
	b := startSDKApp(t, m, host, created, appsdk.NewMemoryResumeStore())
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, id, "display")
	s := b.nextSession(t)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	events := make(chan protocol.StreamEvent, 16)
	s.OnStreamEvent(func(_ *appsdk.Session, ev protocol.StreamEvent) { events <- ev })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if set, err := s.SetStreams(ctx, "transcript"); err != nil || set.Seq != 1 {
		t.Fatalf("SetStreams: %+v, %v", set, err)
	}

	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m2, _ := recoveryServer(t, dir, configure)
	addr2 := strings.TrimPrefix(m2.URL(), "http://")
	proxy.target.Store(&addr2)
	eventually(t, "the SDK reattached to the new process", func() bool { return s.Reattaches() == 1 })
	if h := s.Hello(); h.SubscriptionSeq != 0 || len(h.Subscriptions) != 0 {
		t.Fatalf("hello from the restarted gateway: seq %d %v, want the set lost", h.SubscriptionSeq, h.Subscriptions)
	}
	dev2 := dialClient(t, m2, "u1", "u1-glasses", "glasses")
	eventually(t, "the SDK set its streams again", func() bool {
		var d protocol.StreamDemand
		return dev2.Call(ctx, "streams.demand", protocol.StreamDemandParams{}, &d) == nil && strings.Join(d.Streams, ",") == "transcript"
	})
	var pub protocol.StreamPublished
	if err := dev2.Call(ctx, "streams.publish", protocol.StreamPublishParams{Stream: "transcript", Data: json.RawMessage(`{"text":"back"}`)}, &pub); err != nil || pub.Delivered != 1 {
		t.Fatalf("publish after the restart: %+v, %v", pub, err)
	}
	if ev := recv(t, "stream.event after the gateway restart", events); string(ev.Data) != `{"text":"back"}` {
		t.Fatalf("OnStreamEvent got %+v", ev)
	}
	// The next update continues above the restored seq.
	if set, err := s.SetStreams(ctx, "transcript"); err != nil || set.Seq != 3 || set.Stale {
		t.Fatalf("SetStreams after the restore: %+v, %v; want seq 3", set, err)
	}
}
