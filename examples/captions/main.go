// Command captions is an example app backend on the Go apps SDK (package
// appsdk), a live-caption app: it serves the app's webhook URL, connects
// each session Junction starts, subscribes to the device's transcript
// stream and shows each transcript on the device's main surface for a
// while; it reattaches its sessions when it restarts.
//
//	APP_API_KEY=jk_… APP_WEBHOOK_SECRET=whsec_… \
//	  go run ./examples/captions --addr 127.0.0.1:8081 --junction http://127.0.0.1:7700
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/junctionhq/junction/appsdk"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "captions:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8081", "address to serve the webhook URL (/junction) on")
	junction := flag.String("junction", "http://127.0.0.1:7700", "Junction's HTTP base URL (to list and reattach sessions)")
	appID := flag.String("app", envOr("APP_ID", "com.example.captions"), "the app's id")
	resumeDir := flag.String("resume-dir", "captions-resume", "directory keeping the sessions' resume tokens across restarts")
	stream := flag.String("stream", "transcript", "the transcript stream to subscribe to (transcript, transcript?lang=en-US, …)")
	surface := flag.String("surface", "main", "the device surface to show captions on")
	ttl := flag.Duration("ttl", 4*time.Second, "how long a caption stays on the surface")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	secret, err := webhook.ParseSecret(os.Getenv("APP_WEBHOOK_SECRET"))
	if err != nil {
		return fmt.Errorf("APP_WEBHOOK_SECRET (the whsec_… printed by junction app create): %w", err)
	}
	store, err := appsdk.NewDirResumeStore(*resumeDir)
	if err != nil {
		return err
	}
	app, err := appsdk.New(appsdk.Options{
		AppID:          *appID,
		APIKey:         os.Getenv("APP_API_KEY"),
		WebhookSecrets: []webhook.Secret{secret},
		URL:            *junction,
		Resume:         store,
		Logger:         log,
		OnSession: func(ctx context.Context, s *appsdk.Session) {
			h := s.Hello()
			log.Info("captions: session running", "session", s.ID(), "user", h.UserID, "scopes", h.Scopes,
				"capabilities", h.Capabilities, "device", h.Device.Kind, "online", h.Device.Online, "priority", h.Priority)
			caption(ctx, log, s, *stream, *surface, *ttl)
			<-s.Done()
			log.Info("captions: session over", "session", s.ID(), "why", s.Err())
		},
		OnStop: func(_ context.Context, stop protocol.AppSessionStopHook) {
			log.Info("captions: session.stop", "session", stop.SessionID, "reason", stop.Reason, "stage", stop.Stage)
		},
	})
	if err != nil {
		return fmt.Errorf("%w (APP_API_KEY is the jk_… key printed by junction app create)", err)
	}
	defer app.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /junction", app)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("captions: listening on http://"+ln.Addr().String()+"/junction", "app", *appID)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The sessions a previous run held: reattach them with their tokens.
	attached, err := app.Reattach(ctx)
	if err != nil {
		log.Warn("captions: reattach", "err", err)
	}
	log.Info("captions: reattached sessions", "count", len(attached))

	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	log.Info("captions: shutting down; sessions stay on Junction for the next run")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return app.Close()
}

// caption subscribes s to the transcript stream and shows each transcript
// on surface for ttl. The handlers belong to the session: they go on after
// a reattach, when Junction resumes the session with its subscriptions.
// Outcomes are logged from a goroutine that ends with the session.
func caption(ctx context.Context, log *slog.Logger, s *appsdk.Session, stream, surface string, ttl time.Duration) {
	shown := make(chan *appsdk.OutputHandle, 16)
	go func() {
		for {
			select {
			case h := <-shown:
				final, err := h.Wait(ctx)
				if err != nil {
					continue // the session ended
				}
				oc, _ := h.Outcome()
				log.Info("captions: caption done", "session", s.ID(), "request", h.ID(), "outcome", oc.Kind, "last", final.Kind, "reason", final.Reason)
			case <-ctx.Done():
				return
			}
		}
	}()
	s.OnStreamEvent(func(s *appsdk.Session, ev protocol.StreamEvent) {
		var t struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(ev.Data, &t); err != nil || t.Text == "" {
			log.Warn("captions: a transcript event without text", "session", s.ID(), "stream", ev.Stream, "seq", ev.Seq)
			return
		}
		content, _ := json.Marshal(map[string]string{"text": t.Text})
		h, err := s.Output(ctx, protocol.OutputRequestParams{Surface: surface, Content: content, TTLMs: ttl.Milliseconds()})
		if err != nil {
			log.Warn("captions: output refused", "session", s.ID(), "err", err)
			return
		}
		log.Info("captions: caption", "session", s.ID(), "request", h.ID(), "text", t.Text)
		select {
		case shown <- h:
		default: // the log of outcomes is behind; the caption is shown all the same
		}
	})
	s.OnStreamGap(func(s *appsdk.Session, gap protocol.StreamGap) {
		log.Info("captions: transcript gap", "session", s.ID(), "stream", gap.Stream, "count", gap.Count, "reason", gap.Reason)
	})
	if len(s.Hello().Subscriptions) > 0 {
		// A reattached session: Junction kept its subscriptions.
		log.Info("captions: subscribed", "session", s.ID(), "streams", s.Hello().Subscriptions, "kept", true)
		return
	}
	set, err := s.SetStreams(ctx, stream)
	if err != nil {
		log.Warn("captions: streams.set", "session", s.ID(), "err", err)
		return
	}
	log.Info("captions: subscribed", "session", s.ID(), "streams", set.Granted, "rejected", set.Rejected)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
