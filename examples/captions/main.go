// Command captions is an example app backend on the Go apps SDK (package
// appsdk): it serves the app's webhook URL, connects each session Junction
// starts, logs its hello, and reattaches its sessions when it restarts.
// Its README says what it does today and what is still to come.
//
//	APP_API_KEY=jk_… APP_WEBHOOK_SECRET=whsec_… \
//	  go run ./examples/captions --addr 127.0.0.1:8081 --junction http://127.0.0.1:7700
package main

import (
	"context"
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
