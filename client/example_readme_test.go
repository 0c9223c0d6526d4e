package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/junctionhq/junction/client"
)

func Example_readme() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Options{URL: "ws://127.0.0.1:7700/ws", Token: os.Getenv("TOKEN")})
	if err != nil {
		var he *client.HandshakeError
		if errors.As(err, &he) {
			log.Fatalf("refused with HTTP %d (is TOKEN set? see 'junction token'): %v", he.StatusCode, err)
		}
		log.Fatalf("dial: %v", err)
	}
	defer c.Close()

	var pong struct {
		Pong bool `json:"pong"`
	}
	if err := c.Call(ctx, "sys.ping", nil, &pong); err != nil {
		log.Fatalf("ping: %v", err)
	}
	log.Printf("connected as %s; pong: %v", c.Welcome().Principal.UserID, pong.Pong)
}
