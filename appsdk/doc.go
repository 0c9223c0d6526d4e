// Package appsdk is the Go SDK for the backend of a Junction app (a live
// caption service, a translator): it receives the app's signed webhooks,
// connects each app session with the app's API key, and keeps the session's
// connection alive across transport losses and restarts of the backend.
// docs/apps.md is the developer's guide; this package follows its contract.
//
// Usage:
//
//	secret, _ := webhook.ParseSecret(os.Getenv("APP_WEBHOOK_SECRET"))
//	app, err := appsdk.New(appsdk.Options{
//		AppID:          "com.example.captions",
//		APIKey:         os.Getenv("APP_API_KEY"),
//		WebhookSecrets: []webhook.Secret{secret},
//		URL:            "http://127.0.0.1:7700", // for Sessions and Reattach
//		OnSession: func(ctx context.Context, s *appsdk.Session) {
//			h := s.Hello()
//			log.Printf("session %s for %s: scopes %v", s.ID(), h.UserID, h.Scopes)
//			<-ctx.Done() // the session ended (stopped, detached or lost)
//		},
//	})
//	if err != nil {
//		return err
//	}
//	defer app.Close()
//	app.Reattach(ctx) // the sessions a previous run of this backend held
//	http.Handle("/junction", app)
//
// # Webhooks
//
// App is an http.Handler for the app's webhook URL. It verifies each
// request's Standard Webhooks signature and timestamp (package webhook:
// refused with 401), dedupes on webhook-id (a bounded set of recent ids:
// a repeat is answered 200 and not dispatched again), and dispatches on the
// body's type: session.start is answered 202 at once and the session is
// connected in the background (accepted is not connected: Junction's
// connect deadline runs from the answer); session.stop marks the session's
// handle stopped and calls Options.OnStop; the handle ends when Junction
// closes the session's connection (app.stopped, then 1000: its event
// handlers run, though the webhook may come first) or 2 s later at the
// latest. Other types go to the handler
// registered with HandleWebhook; a type without one is answered 200 and
// ignored, so that a Junction newer than the backend never sees its
// webhooks retried.
//
// # Sessions
//
// A Session is the handle of one app session: its id, the latest
// apps.hello answer (Hello), calls on its connection (Session.Call and the
// typed Call), events (App.OnEvent, Session.OnEvent and the typed
// OnEventData), and Stop. Its connection is a client.Client dialed with the
// API key and the start ticket (Junction-Ticket); after each hello the
// session's resume token is saved in the ResumeStore. When the connection
// is lost the session reattaches with that token (Junction-Resume) with
// backoff, for up to Options.ReattachFor, and says hello again. It does not
// reconnect after app.stopped and its close 1000 (the session stopped:
// StoppedError), after 4009 (another connection reattached:
// ErrSuperseded), after another code that advises against reconnecting, or
// after an upgrade refused with 401, 403 or 409 (a used or superseded
// token, another app's session, an uninstall, a stopped session). Err says
// why a session ended; Done is closed when it has.
//
// Session.Close (and App.Close) only detach: the session goes on running on
// Junction (transport_down) and a later run of the backend, or another
// instance sharing the ResumeStore, reattaches it (App.Reattach, App.Attach).
// Session.Stop stops it for good.
//
// # Restarts
//
// Keep the resume tokens in storage that outlives the process
// (DirResumeStore, or an implementation of ResumeStore over the app's own
// database). At start, App.Reattach lists the app's running and
// transport_down sessions (GET /api/v1/apps/{appId}/sessions?state=…) and
// reattaches each one it has a token for.
//
// # Streams, outputs, settings and tools
//
// Session.SetStreams sets the session's device-stream subscriptions
// (streams.set, its seq numbered by the SDK) and returns what was granted
// and rejected; OnStreamEvent, OnStreamGap, OnStreamRevoked and OnMedia
// (binary frames decoded with protocol.ParseStreamFrame) receive them.
// Session.Output requests content on a device surface and returns an
// OutputHandle that follows the request's output.status events until the
// final one. OnSettings receives settings.changed; App.HandleTool answers
// tool.invoke. The handlers belong to the Session, not to one connection:
// they keep running after a reattach, when Junction resumes the session
// with its stream set.
//
// # Extending
//
// Methods and events the SDK does not wrap yet are reachable through
// Session.Call, Call[R] and OnEventData[T] with the protocol package's
// types; HandleWebhook takes webhook types the SDK does not handle itself.
package appsdk
