package webhook_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/junctionhq/junction/webhook"
)

// An app backend's webhook endpoint: verify, then handle.
func ExampleVerifier_VerifyRequest() {
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	v := &webhook.Verifier{
		Secrets: []webhook.Secret{secret},
		Now:     func() time.Time { return time.Unix(1614265330, 0) }, // the example's time; omit in real code
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, msg, err := v.VerifyRequest(r, 1<<20)
		if err != nil {
			fmt.Println("refused:", errors.Is(err, webhook.ErrSignatureMismatch))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fmt.Printf("%s: %s\n", msg.ID, body)
		w.WriteHeader(http.StatusNoContent)
	})

	for _, body := range []string{`{"test": 2432232314}`, `{"test": 1}`} {
		r := httptest.NewRequest(http.MethodPost, "/junction", strings.NewReader(body))
		r.Header.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
		r.Header.Set("webhook-timestamp", "1614265330")
		r.Header.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
		handler.ServeHTTP(httptest.NewRecorder(), r)
	}
	// Output:
	// msg_p5jXN8AQM9LWM0D4loKWxJek: {"test": 2432232314}
	// refused: true
}
