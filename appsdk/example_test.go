package appsdk_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/junctionhq/junction/appsdk"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// An app backend: the webhook URL on /junction, each session logged with
// its hello, the resume tokens kept on disk so that a restart reattaches.
func Example() {
	secret, err := webhook.ParseSecret(os.Getenv("APP_WEBHOOK_SECRET"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := appsdk.NewDirResumeStore("resume")
	if err != nil {
		log.Fatal(err)
	}
	app, err := appsdk.New(appsdk.Options{
		AppID:          "com.example.captions",
		APIKey:         os.Getenv("APP_API_KEY"),
		WebhookSecrets: []webhook.Secret{secret},
		URL:            "http://127.0.0.1:7700",
		Resume:         store,
		OnSession: func(ctx context.Context, s *appsdk.Session) {
			log.Printf("session %s for %s, scopes %v", s.ID(), s.UserID(), s.Hello().Scopes)
			<-ctx.Done()
			log.Printf("session %s over: %v", s.ID(), s.Err())
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	// Typed events: the data decoded into a protocol type.
	appsdk.OnEventData(app, protocol.EventAppStopped, func(s *appsdk.Session, st protocol.AppStopped) {
		log.Printf("session %s stopped: %s", s.ID(), st.Reason)
	})
	if _, err := app.Reattach(context.Background()); err != nil {
		log.Print(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8081", app))
}

// A method the SDK does not wrap, with its result's protocol type.
func ExampleCall() {
	var s *appsdk.Session // from Options.OnSession
	pong, err := appsdk.Call[protocol.PingResult](context.Background(), s, "sys.ping", nil)
	if err != nil {
		log.Fatal(err)
	}
	log.Print(pong.Pong)
}
