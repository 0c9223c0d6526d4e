// Command gomachine is the Go half of the TypeScript SDK's cross-language
// RPC test (sdk/ts/test/rpc.test.mjs): a machine built on the Go SDK that
// serves go.echo (with one progress event) and, once connected, calls the
// TypeScript machine's ts.echo named by its first argument. It prints
// "ready" when it serves, then the result of its own call as JSON.
//
//	JUNCTION_URL=ws://... JUNCTION_TOKEN=... gomachine DEVICE
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/junctionhq/junction/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gomachine:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := client.New(client.Options{URL: os.Getenv("JUNCTION_URL"), Token: os.Getenv("JUNCTION_TOKEN")})
	err := c.Serve("go.echo", func(ctx context.Context, req *client.RPCRequest) (any, error) {
		var p map[string]any
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		if err := req.Progress(ctx, map[string]string{"from": "go"}); err != nil {
			return nil, err
		}
		return map[string]any{"echo": p, "caller": req.Caller.DeviceID}, nil
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("ready")
	if len(os.Args) > 1 {
		var progress []json.RawMessage
		var res json.RawMessage
		err := c.CallDevice(cctx, os.Args[1], "ts.echo", map[string]int{"n": 7}, &res,
			client.WithProgress(func(d json.RawMessage) { progress = append(progress, d) }))
		if err != nil {
			return fmt.Errorf("call ts.echo: %w", err)
		}
		out, _ := json.Marshal(map[string]any{"result": res, "progress": progress})
		fmt.Println(string(out))
	}
	<-ctx.Done()
	return nil
}
