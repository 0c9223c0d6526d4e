// Command glasses is a simulated device for trying an app: with a device's
// token it declares a display surface, installs the app for its user,
// starts it, publishes transcript events (a built-in script, or the lines
// of its standard input) while the app subscribes to them, prints what the
// app shows (output.show, output.clear) and the session's app.session
// events, and stops the session on Ctrl-C.
//
//	TOKEN=$(junction token --user alice --device glasses-1 --kind glasses --scope read,write,output)
//	go run ./examples/glasses --token "$TOKEN" --app com.example.captions
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// script is what the device "hears" with --transcript script.
var script = []string{
	"Hello, this is a live caption test.",
	"Junction carries my words to the app as transcript events.",
	"The app shows each one on the main surface of my display.",
	"Each caption hides itself when its time is up.",
}

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
	scopes := flag.String("scopes", "read,stream:transcript,output", "the scopes to grant the app, comma-separated")
	caps := flag.String("capabilities", "display,microphone", "the device's capabilities, comma-separated")
	surface := flag.String("surface", "main", "the display surface to declare (empty: none)")
	minInterval := flag.Duration("min-interval", 0, "the surface's minimum interval between two commands")
	transcript := flag.String("transcript", "script", "what to publish on the transcript stream: script (built-in phrases), stdin (one event per line), none")
	every := flag.Duration("every", 2*time.Second, "the pause between two phrases of the script")
	flag.Parse()
	switch *transcript {
	case "script", "stdin", "none":
	default:
		return fmt.Errorf("--transcript %q: want script, stdin or none", *transcript)
	}

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
	c.OnEvent(protocol.EventOutputShow, func(f *protocol.Frame) {
		var sh protocol.OutputShow
		if json.Unmarshal(f.Data, &sh) == nil {
			fmt.Printf("output.show %s: %s\n", sh.Surface, contentText(sh.Content))
		}
	})
	c.OnEvent(protocol.EventOutputClear, func(f *protocol.Frame) {
		var cl protocol.OutputClear
		if json.Unmarshal(f.Data, &cl) == nil {
			fmt.Printf("output.clear %s\n", cl.Surface)
		}
	})
	demand := newDemand()
	c.OnEvent(protocol.EventStreamDemand, func(f *protocol.Frame) {
		var d protocol.StreamDemand
		if json.Unmarshal(f.Data, &d) == nil {
			demand.set(d.Streams)
		}
	})
	// After every connection: surfaces live as long as the connection that
	// declared them, and the demand is asked again.
	c.OnConnect(func(ctx context.Context, c *client.Client, _ bool) {
		if *surface != "" {
			p := protocol.OutputDeclareParams{Surfaces: []protocol.OutputSurface{{Name: *surface, MinIntervalMs: minInterval.Milliseconds()}}}
			if err := c.Call(ctx, "output.declare", p, nil); err != nil {
				fmt.Fprintln(os.Stderr, "glasses: output.declare:", err)
			} else {
				fmt.Printf("declared surface %s\n", *surface)
			}
		}
		var d protocol.StreamDemand
		if err := c.Call(ctx, "streams.demand", protocol.StreamDemandParams{}, &d); err == nil {
			demand.set(d.Streams)
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

	var wg sync.WaitGroup
	defer wg.Wait()
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	switch *transcript {
	case "script":
		wg.Go(func() { publishScript(pctx, c, demand, *every) })
	case "stdin":
		wg.Go(func() { publishLines(pctx, c, demand, os.Stdin) })
	}

	select {
	case s := <-ended:
		fmt.Printf("session %s stopped: %s %s %s\n", s.ID, s.StopReason, s.Stage, s.Error)
		return nil
	case <-ctx.Done():
	}
	pcancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	var res protocol.AppSessionStopped
	if err := c.Call(sctx, "apps.stopSession", protocol.AppSessionRef{AppID: *appID, SessionID: sessionID}, &res); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Printf("stopped session %s: %s\n", sessionID, res.Session.StopReason)
	return nil
}

// publishScript publishes the script's phrases, one every pause, once an
// app wants the transcript stream.
func publishScript(ctx context.Context, c *client.Client, d *demand, pause time.Duration) {
	for i, phrase := range script {
		if i > 0 {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return
			}
		}
		if !publish(ctx, c, d, phrase) {
			return
		}
	}
	fmt.Println("script done")
}

// publishLines publishes each line of r as a transcript event.
func publishLines(ctx context.Context, c *client.Client, d *demand, r io.Reader) {
	lines := make(chan string)
	// The reader ends at EOF or with ctx; a Scan blocked on a terminal
	// ends with the process.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return
			}
			if line = strings.TrimSpace(line); line != "" && !publish(ctx, c, d, line) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// publish waits until some app subscribes to a transcript stream, then
// publishes text on each transcript stream wanted; false when ctx ended.
func publish(ctx context.Context, c *client.Client, d *demand, text string) bool {
	streams, ok := d.transcripts(ctx)
	if !ok {
		return false
	}
	data, _ := json.Marshal(map[string]string{"text": text})
	for _, s := range streams {
		var pub protocol.StreamPublished
		if err := c.Call(ctx, "streams.publish", protocol.StreamPublishParams{Stream: s, Data: data}, &pub); err != nil {
			fmt.Fprintln(os.Stderr, "glasses: streams.publish:", err)
			continue
		}
		fmt.Printf("heard %q (%s #%d, delivered to %d)\n", text, pub.Stream, pub.Seq, pub.Delivered)
	}
	return true
}

// demand is the device's current stream demand (stream.demand).
type demand struct {
	mu      sync.Mutex
	streams []string      // guarded by mu
	changed chan struct{} // guarded by mu: closed and replaced on each change
}

func newDemand() *demand { return &demand{changed: make(chan struct{})} }

func (d *demand) set(streams []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Equal(d.streams, streams) {
		return
	}
	d.streams = streams
	fmt.Printf("stream.demand [%s]\n", strings.Join(streams, " "))
	close(d.changed)
	d.changed = make(chan struct{})
}

// transcripts waits until a transcript stream is wanted and returns them.
func (d *demand) transcripts(ctx context.Context) ([]string, bool) {
	for {
		d.mu.Lock()
		var out []string
		for _, s := range d.streams {
			if s == "transcript" || strings.HasPrefix(s, "transcript?") {
				out = append(out, s)
			}
		}
		ch := d.changed
		d.mu.Unlock()
		if len(out) > 0 {
			return out, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// contentText is the text of a caption ({"text": …}), or the content as
// JSON.
func contentText(content json.RawMessage) string {
	var v struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(content, &v) == nil && v.Text != nil {
		return *v.Text
	}
	return string(content)
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
