package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestContractCommand checks that `junction contract asyncapi|openapi`
// prints the documents a started server serves: the TypeScript SDK's types
// are generated from this output.
func TestContractCommand(t *testing.T) {
	m := startServer(t, nil)
	for _, tc := range []struct{ arg, path string }{
		{"asyncapi", "/api/v1/asyncapi.json"},
		{"openapi", "/api/v1/openapi.json"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"contract", tc.arg}, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("junction contract %s: exit %d, stderr %q", tc.arg, code, stderr.String())
			}
			var printed map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
				t.Fatalf("printed document is not JSON: %v", err)
			}
			resp, err := http.Get(m.URL() + tc.path)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read %s: %v", tc.path, err)
			}
			var served map[string]any
			if err := json.Unmarshal(raw, &served); err != nil {
				t.Fatalf("served document is not JSON: %v", err)
			}
			if !reflect.DeepEqual(printed, served) {
				t.Errorf("junction contract %s differs from GET %s", tc.arg, tc.path)
			}
			if len(printed) < 3 {
				t.Errorf("printed document has %d members, want a whole document", len(printed))
			}
		})
	}
	t.Run("bad argument", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"contract", "graphql"}, nil, &stdout, &stderr); code == 0 {
			t.Fatalf("junction contract graphql: exit 0, want a failure")
		}
		if !strings.Contains(stderr.String(), "asyncapi|openapi") {
			t.Errorf("stderr %q does not show the usage", stderr.String())
		}
	})
}
