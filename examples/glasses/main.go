// Command glasses is a simulated device for trying an app: with a device's
// token it installs the app for its user, starts it, prints the session's
// app.session events, and stops it on Ctrl-C.
//
//	TOKEN=$(junction token --user alice --device glasses-1 --kind glasses)
//	go run ./examples/glasses --token "$TOKEN" --app com.example.captions
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "glasses:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "ws://127.0.0.1:7700/ws", "Junction's WebSocket URL")
	token := flag.String("token", os.Getenv("TOKEN"), "the device's access token (junction token --kind glasses …)")
	appID := flag.String("app", "com.example.captions", "the app to install and start")
	scopes := flag.String("scopes", "read", "the scopes to grant the app, comma-separated")
	caps := flag.String("capabilities", "display,microphone", "the device's capabilities, comma-separated")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := client.New(client.Options{URL: *url, Token: *token, Reconnect: true})
	var current atomic.Pointer[string] // the started session's id, once known
	ended := make(chan protocol.AppSession, 1)
	c.OnEvent(protocol.EventAppSession, func(f *protocol.Frame) {
		var s protocol.AppSession
		if json.Unmarshal(f.Data, &s) != nil || s.AppID != *appID {
			return
		}
		fmt.Printf("app.session %s %s %s %s\n", s.ID, s.State, s.StopReason, s.Stage)
		if id := current.Load(); id != nil && *id == s.ID && s.State == protocol.AppStateStopped {
			select {
			case ended <- s:
			default:
			}
		}
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()

	var inst protocol.AppInstalled
	if err := c.Call(ctx, "apps.install", protocol.AppInstallParams{AppID: *appID, Scopes: split(*scopes)}, &inst); err != nil {
		return fmt.Errorf("install %s: %w", *appID, err)
	}
	fmt.Printf("installed %s granting %s\n", *appID, strings.Join(inst.Install.Scopes, ","))
	var st protocol.AppSessionStarted
	if err := c.Call(ctx, "apps.startSession", protocol.AppSessionStartParams{AppID: *appID, Capabilities: split(*caps)}, &st); err != nil {
		return fmt.Errorf("start %s: %w", *appID, err)
	}
	sessionID := st.Session.ID
	current.Store(&sessionID)
	fmt.Printf("started session %s (%s); Ctrl-C stops it\n", st.Session.ID, st.Session.State)

	select {
	case s := <-ended:
		fmt.Printf("session %s stopped: %s %s %s\n", s.ID, s.StopReason, s.Stage, s.Error)
		return nil
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	var res protocol.AppSessionStopped
	if err := c.Call(sctx, "apps.stopSession", protocol.AppSessionRef{AppID: *appID, SessionID: sessionID}, &res); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Printf("stopped session %s: %s\n", sessionID, res.Session.StopReason)
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
