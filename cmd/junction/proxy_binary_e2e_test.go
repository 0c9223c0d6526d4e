package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// TestBinaryReloadsOnSIGHUP: the shipped binary, its file watcher off,
// reloads its configuration file on SIGHUP: a connection opened before
// stays open and can call the method routed by the new file; an invalid
// file is refused with a log line, and the running routes stay.
func TestBinaryReloadsOnSIGHUP(t *testing.T) {
	chat := newTestBackend(t, chatBackend)
	bin := buildJunction(t)
	file := filepath.Join(t.TempDir(), "junction.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config_poll: -1s\n")
	s, data := startBinary(t, bin, "--config", file, "--log-format", "json")
	out, err := exec.Command(bin, "token", "--data", data, "--user", "alice", "--device", "laptop", "--kind", "browser", "--scope", "read,write").Output()
	if err != nil {
		t.Fatalf("junction token: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: "ws" + strings.TrimPrefix(s.url, "http") + "/ws", Token: strings.TrimSpace(string(out))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if codeOf(c.Call(ctx, "chat.send", nil, nil)) != protocol.CodeUnknownMethod {
		t.Fatal("chat.send before the reload: want unknown_method")
	}

	good := fmt.Sprintf("config_poll: -1s\nproxy:\n  backends:\n    - name: chat\n      url: %s/junction\n      secret: %s\n  methods:\n    - method: chat.*\n      backend: chat\n",
		chat.URL, chat.secret.Encode())
	write(good)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var got struct{ From string }
	eventually(t, "chat.send to be routed after SIGHUP", func() bool {
		return c.Call(ctx, "chat.send", nil, &got) == nil && got.From == "alice"
	})

	write(strings.Replace(good, "backend: chat", "backend: missing", 1))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refusal's log line", func() bool {
		return strings.Contains(s.stderr.String(), `"msg":"config reload refused; the running configuration stays"`) &&
			strings.Contains(s.stderr.String(), `no backend \"missing\"`)
	})
	if err := c.Call(ctx, "chat.send", nil, &got); err != nil {
		t.Errorf("chat.send after a refused reload: %v, want the running route kept", err)
	}
	if c.State() != client.StateConnected {
		t.Errorf("the connection did not stay open")
	}
	s.term(t)
}
