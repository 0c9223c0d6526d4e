package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
)

// TestBinaryRunsConfiguredJob: the shipped binary, started with a config
// file holding a job, publishes on the job's schedule to a channel that a
// WebSocket subscriber receives, and lists the job's runs over REST; on
// SIGTERM the scheduler stops with the rest.
func TestBinaryRunsConfiguredJob(t *testing.T) {
	bin := buildJunction(t)
	file := filepath.Join(t.TempDir(), "junction.yaml")
	config := "schedule:\n  jobs:\n    - name: heartbeat\n      cron: \"* * * * * *\"\n      time_zone: Asia/Kolkata\n      publish:\n        topic: public:heartbeat\n        data: {alive: true}\n"
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s, data := startBinary(t, bin, "--config", file)
	mint := func(scope string) string {
		t.Helper()
		out, err := exec.Command(bin, "token", "--data", data, "--user", "ops", "--device", "d-"+scope, "--kind", "browser", "--scope", scope).Output()
		if err != nil {
			t.Fatalf("junction token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.New(client.Options{URL: "ws" + strings.TrimPrefix(s.url, "http") + "/ws", Token: mint("read")})
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan client.Publication, 8)
	if _, err := c.Subscribe(ctx, "public:heartbeat", func(p client.Publication) { got <- p }); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p.Data) != `{"alive":true}` {
			t.Fatalf("publication %s, want {\"alive\":true}", p.Data)
		}
	case <-ctx.Done():
		t.Fatal("the configured job published nothing")
	}
	req, err := http.NewRequestWithContext(ctx, "GET", s.url+"/api/v1/admin/schedules/heartbeat/runs", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+mint("admin"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"trigger":"schedule"`) || !strings.Contains(string(body), `"ok":true`) {
		t.Fatalf("runs: %d %s", resp.StatusCode, body)
	}
	s.term(t)
}
