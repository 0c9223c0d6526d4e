package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// runContract prints the wire contract the server serves, without a running
// server: "asyncapi" is the document of GET /api/v1/asyncapi.json, "openapi"
// the one of GET /api/v1/openapi.json. It builds the whole server with its
// defaults on a temporary data directory and a loopback port of its own (the
// documents list exactly the methods and routes the server registers), takes
// the document and closes it. The TypeScript SDK generates its types from
// this output (sdk/ts/scripts/gen-types.mjs).
func runContract(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, contractUsage)
		return nil
	}
	if len(args) != 1 || (args[0] != "asyncapi" && args[0] != "openapi") {
		fmt.Fprint(stderr, contractUsage)
		return fmt.Errorf("contract: want one argument, asyncapi or openapi; got %q", args)
	}
	dir, err := os.MkdirTemp("", "junction-contract-")
	if err != nil {
		return fmt.Errorf("contract: temporary data directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := &Config{Addr: "127.0.0.1:0", Data: dir, LogLevel: "error"}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("contract: %w", err)
	}
	m := NewMain(cfg, io.Discard, io.Discard)
	if err := m.Open(ctx); err != nil {
		return fmt.Errorf("contract: build the server: %w", err)
	}
	defer m.Close(context.Background())
	var doc map[string]any
	if args[0] == "asyncapi" {
		doc, _ = m.Web.AsyncAPI()
	} else {
		doc = m.Web.OpenAPIDoc() // the served document: account and apps operations
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("contract: write the document: %w", err)
	}
	return nil
}

const contractUsage = `Usage: junction contract asyncapi|openapi

Print the wire contract the server serves (indented JSON), without a running
server: asyncapi is GET /api/v1/asyncapi.json (the WebSocket protocol),
openapi is GET /api/v1/openapi.json (the REST API).
`
