package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// TestSDKDataHelpers walks the Go SDK's path: key login over REST, then
// sealed data over the WebSocket, shared with a second device's box key.
func TestSDKDataHelpers(t *testing.T) {
	m := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := newKey(t)
	tok, err := client.Login(ctx, nil, m.URL(), key, client.LoginDevice{Name: "laptop", Kind: "browser"})
	if err != nil || !tok.Created {
		t.Fatalf("login: %+v, %v", tok, err)
	}
	if _, err := client.Login(ctx, nil, m.URL(), key, client.LoginDevice{Kind: "toaster"}); asProtocolError(err) == nil || asProtocolError(err).Details["field"] != "device.kind" {
		t.Fatalf("login with a bad kind: got %v, want bad_request naming device.kind", err)
	}
	next, err := client.Refresh(ctx, nil, m.URL(), tok.RefreshToken)
	if err != nil || next.DeviceID != tok.DeviceID {
		t.Fatalf("refresh: %+v, %v", next, err)
	}
	c := dialToken(t, m, next.AccessToken)

	dataKey, _ := client.NewDataKey()
	seal := func(s string) []byte {
		b, err := client.Seal(dataKey, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s, err := c.CreateSession(ctx, seal("title"), nil, "create-1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.CreateSession(ctx, seal("title"), nil, "create-1"); err == nil {
		t.Fatalf("same key, other ciphertext (random nonce): got %s, want a conflict", again.ID)
	}
	if _, err := c.UpdateSession(ctx, s.ID, "metadata", seal("new title"), 1, ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.UpdateSession(ctx, s.ID, "metadata", seal("lost"), 1, "")
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeConflict {
		t.Fatalf("stale update: got %v, want conflict", err)
	}
	msgs, err := c.AppendMessages(ctx, s.ID, []client.NewMessage{{LocalID: "1", Body: seal("hello")}, {LocalID: "2", Body: seal("world")}}, "")
	if err != nil || len(msgs) != 2 || msgs[1].Seq != 2 {
		t.Fatalf("append: %+v, %v", msgs, err)
	}
	got, err := c.Messages(ctx, s.ID, 1, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("messages after 1: %+v, %v", got, err)
	}
	if plain, err := client.Open(dataKey, got[0].Body); err != nil || string(plain) != "world" {
		t.Fatalf("open message: %q, %v", plain, err)
	}
	ups, err := c.UpdatesSince(ctx, 0, 0)
	if err != nil || ups.Reset || len(ups.Updates) != 5 {
		t.Fatalf("updates since 0: %+v, %v; want device, session created and updated, 2 messages", ups, err)
	}

	// A second device receives the data key boxed to its own key.
	pub, priv, _ := client.NewBoxKey()
	shared, err := client.ShareKey(dataKey, pub)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := client.OpenKey(shared, priv)
	if err != nil || !bytes.Equal(k2[:], dataKey[:]) {
		t.Fatalf("open shared key: %v", err)
	}
	sess, err := c.Session(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := client.Open(k2, sess.Metadata.Value); err != nil || string(plain) != "new title" {
		t.Fatalf("second device opens the metadata: %q, %v", plain, err)
	}
}
