package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

func TestValidAppID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"com.example.captions", true},
		{"io.x", true},
		{"com.example.my_app", true},
		{"com.ex-ample.app2", true},
		{"captions", false},        // one label
		{"Com.example.app", false}, // uppercase
		{"com..app", false},        // empty label
		{".com.app", false},        // empty first label
		{"com.app.", false},        // empty last label
		{"com.-app", false},        // label starts with '-'
		{"com.app-", false},        // label ends with '-'
		{"my_co.app", false},       // '_' in the first label
		{"com.app/x", false},       // '/'
		{"c.a", true},              // three characters
		{"c.", false},              // too short and empty label
		{"com." + string(make([]byte, 64)), false},
	}
	for _, tt := range tests {
		if got := ValidAppID(tt.id); got != tt.want {
			t.Errorf("ValidAppID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	long := "com." + string(bytes.Repeat([]byte("a"), 63)) + "." + string(bytes.Repeat([]byte("b"), 63))
	if ValidAppID(long + ".c") {
		t.Errorf("ValidAppID of %d characters = true, want false (over %d)", len(long)+2, maxAppIDLen)
	}
}

func TestCheckCreate(t *testing.T) {
	ok := func() protocol.AppCreateParams {
		return protocol.AppCreateParams{ID: "com.example.c", Name: "C"}
	}
	p := ok()
	if err := checkCreate(&p); err != nil || p.Kind != "foreground" || p.Priority != "foreground" {
		t.Fatalf("defaults: %+v, %v; want kind and priority foreground", p, err)
	}
	p = ok()
	p.Kind = "background"
	if err := checkCreate(&p); err != nil || p.Priority != "background" {
		t.Fatalf("background app: priority %q, %v; want background", p.Priority, err)
	}
	tests := []struct {
		name  string
		edit  func(*protocol.AppCreateParams)
		field string
	}{
		{"id", func(p *protocol.AppCreateParams) { p.ID = "nodots" }, "id"},
		{"name", func(p *protocol.AppCreateParams) { p.Name = "" }, "name"},
		{"kind", func(p *protocol.AppCreateParams) { p.Kind = "daemon" }, "kind"},
		{"priority", func(p *protocol.AppCreateParams) { p.Priority = "urgent" }, "priority"},
		{"webhook scheme", func(p *protocol.AppCreateParams) { p.WebhookURL = "ftp://x.example" }, "webhookUrl"},
		{"webhook credentials", func(p *protocol.AppCreateParams) { p.WebhookURL = "https://u:p@x.example/" }, "webhookUrl"},
		{"webhook relative", func(p *protocol.AppCreateParams) { p.WebhookURL = "/hooks" }, "webhookUrl"},
		{"admin scope", func(p *protocol.AppCreateParams) { p.Scopes = []string{"read", "admin"} }, "scopes"},
		{"scope syntax", func(p *protocol.AppCreateParams) { p.Scopes = []string{"Read"} }, "scopes"},
		{"scope twice", func(p *protocol.AppCreateParams) { p.Scopes = []string{"read", "read"} }, "scopes"},
		{"capability syntax", func(p *protocol.AppCreateParams) { p.Capabilities = []string{"has space"} }, "capabilities"},
		{"settings not an object", func(p *protocol.AppCreateParams) { p.SettingsSchema = json.RawMessage(`[1]`) }, "settingsSchema"},
		{"tool name", func(p *protocol.AppCreateParams) { p.Tools = []protocol.AppTool{{Name: ""}} }, "tools"},
		{"tool twice", func(p *protocol.AppCreateParams) { p.Tools = []protocol.AppTool{{Name: "t"}, {Name: "t"}} }, "tools"},
		{"tool params", func(p *protocol.AppCreateParams) {
			p.Tools = []protocol.AppTool{{Name: "t", Params: json.RawMessage(`"x"`)}}
		}, "tools"},
		{"key ttl", func(p *protocol.AppCreateParams) { p.KeyTTLMs = -1 }, "keyTtlMs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.edit(&p)
			err := checkCreate(&p)
			pe := protocol.AsError(err)
			if err == nil || pe.Code != protocol.CodeBadRequest || pe.Details["field"] != tt.field {
				t.Fatalf("got %v, want bad_request naming %s", err, tt.field)
			}
		})
	}
}

// TestLastUseCoalesced: uses are kept in memory (the latest per key) and
// written in one go; a failed write keeps them for the next.
func TestLastUseCoalesced(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "j.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pepper := bytes.Repeat([]byte{1}, auth.MinPepperBytes)
	_, id, mac, err := auth.NewAPIKey(pepper)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateApp(ctx, store.App{ID: "com.example.a", Name: "A", Kind: "foreground", Priority: "foreground"}, store.AppKey{ID: id, MAC: mac}); err != nil {
		t.Fatal(err)
	}
	s := &Service{deps: Deps{Store: db}, log: slog.New(slog.DiscardHandler), used: map[string]time.Time{}}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.APIKeyUsed(id, t0)
	s.APIKeyUsed(id, t0.Add(2*time.Second))
	s.APIKeyUsed(id, t0.Add(time.Second)) // out of order: the latest wins
	keys, _ := db.AppKeys(ctx, "com.example.a")
	if !keys[0].LastUsedAt.IsZero() {
		t.Fatalf("last use written before a flush: %v", keys[0].LastUsedAt)
	}
	s.FlushLastUse(ctx)
	keys, _ = db.AppKeys(ctx, "com.example.a")
	if !keys[0].LastUsedAt.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("last use %v, want %v", keys[0].LastUsedAt, t0.Add(2*time.Second))
	}
	if len(s.used) != 0 {
		t.Fatalf("pending uses after a flush: %v", s.used)
	}

	// The lookup: the app's principal with the key's expiry; a revoked key
	// is ErrRevoked, an unknown one ErrUnknownAPIKey.
	gotMAC, p, err := s.LookupAPIKey(ctx, id)
	if err != nil || !bytes.Equal(gotMAC, mac) || p.AppID != "com.example.a" || p.TokenID != id || p.UserID != "" {
		t.Fatalf("LookupAPIKey = %+v, %v", p, err)
	}
	if _, _, err := s.LookupAPIKey(ctx, "nope"); err != auth.ErrUnknownAPIKey {
		t.Fatalf("LookupAPIKey(unknown) = %v, want ErrUnknownAPIKey", err)
	}
	if _, err := db.RevokeAppKey(ctx, "com.example.a", id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LookupAPIKey(ctx, id); err != auth.ErrRevoked {
		t.Fatalf("LookupAPIKey(revoked) = %v, want ErrRevoked", err)
	}

	// A failed write keeps the times.
	s.APIKeyUsed(id, t0.Add(time.Hour))
	db.Close()
	s.FlushLastUse(ctx)
	if got := s.used[id]; !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a failed write: pending %v, want %v kept", got, t0.Add(time.Hour))
	}
}
