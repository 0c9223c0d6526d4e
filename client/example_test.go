package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// serverURL is the server's WebSocket endpoint, ws://127.0.0.1:7700/ws for
// a local "junction serve". The examples run against a real hub that
// TestMain starts on a free port, and their Output is checked.
var serverURL = "ws://127.0.0.1:7700/ws"

// A client that calls a method and prints the events of a channel.
func Example() {
	ctx := context.Background()
	c := client.New(client.Options{
		URL:       serverURL,
		Token:     "eyJ...",
		Reconnect: true,
	})
	c.OnEvent("channel.message", func(f *protocol.Frame) {
		fmt.Printf("%s #%d: %s\n", f.Topic, f.Offset, f.Data)
	})
	c.OnConnect(func(ctx context.Context, c *client.Client, reconnected bool) {
		// Subscribe (again) after every welcome.
		if err := c.Call(ctx, "channel.subscribe", map[string]string{"topic": "public:news"}, nil); err != nil {
			log.Printf("subscribe: %v", err)
		}
	})
	if err := c.Connect(ctx); err != nil {
		var he *client.HandshakeError
		if errors.As(err, &he) {
			log.Fatalf("refused with http %d", he.StatusCode)
		}
		log.Fatal(err)
	}
	defer c.Close()

	var pong struct {
		Pong bool `json:"pong"`
	}
	if err := c.Call(ctx, "sys.ping", nil, &pong); err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Retryable {
			log.Printf("try again later: %v", perr)
		}
		log.Fatal(err)
	}
	fmt.Println("pong:", pong.Pong)
	// Output: pong: true
}

// Dial connects with the defaults: no reconnect, the client closes at the
// first disconnect.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: serverURL, Token: "eyJ..."})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("connected as", c.Welcome().Principal.UserID)
	// Output: connected as alice
}

// A machine serves methods that apps call through the gateway.
func ExampleClient_Handle() {
	c := client.New(client.Options{
		URL:       serverURL,
		TokenFunc: func(ctx context.Context) (string, error) { return "eyJ...", nil },
		Reconnect: true,
	})
	c.Handle("machine.readFile", func(ctx context.Context, req *protocol.Frame) (any, error) {
		var p struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal(req.Params, &p); err != nil || p.Path == "" {
			return nil, protocol.FieldError("path", "required")
		}
		return map[string]string{"content": "..."}, nil
	})
	if err := c.Connect(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer c.Close() // a machine serves until it exits: <-c.Done()
	fmt.Println("serving machine.readFile as", c.Welcome().Principal.DeviceID)
	// Output: serving machine.readFile as laptop
}
