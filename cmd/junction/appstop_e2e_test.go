package main

import (
	"context"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// TestAppStopsItsOwnSession: an app that stops its session over the
// session's own connection gets the answer (an error is an answer, and so
// is a success), then app.stopped's close, 1000; the session stops with
// app_error and the device is told.
func TestAppStopsItsOwnSession(t *testing.T) {
	m, _ := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	created := registerApp(t, m, b, "com.example.captions", "foreground", true, "u1")
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, "com.example.captions", "display")
	app := connectApp(t, m, created.Key.Key, b.next("session.start"))
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)

	var stopped protocol.AppSessionStopped
	ref := protocol.AppSessionRef{AppID: "com.example.captions", SessionID: st.Session.ID}
	if err := app.c.Call(context.Background(), "apps.stopSession", ref, &stopped); err != nil {
		t.Fatalf("the app's own stop: %v, want the answer before the close", err)
	}
	if stopped.AlreadyStopped || stopped.Session.State != protocol.AppStateStopped || stopped.Session.StopReason != protocol.StopAppError {
		t.Fatalf("stopped %+v", stopped)
	}
	select {
	case s := <-app.stopped:
		if s.SessionID != st.Session.ID || s.Reason != protocol.StopAppError || s.Reconnect {
			t.Fatalf("app.stopped %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app got no app.stopped")
	}
	select {
	case <-app.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the app's connection was not closed after the answer")
	}
	if code := app.c.CloseCode(); code != protocol.CloseNormal {
		t.Fatalf("app socket closed with %d, want 1000", code)
	}
	dev.wait(t, st.Session.ID, protocol.AppStateStopped)
}
