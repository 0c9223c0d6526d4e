package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks the served OpenAPI document against the
// routes the server actually registered: every /api/v1 route is documented
// and every documented operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	m := startServer(t, nil)
	status, raw := apiCall(t, m, "", "GET", "/api/v1/openapi.json", nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi: got %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var o struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil {
				t.Fatal(err)
			}
			if o.OperationID == "" || ids[o.OperationID] {
				t.Errorf("%s %s: operationId %q missing or duplicate", method, path, o.OperationID)
			}
			ids[o.OperationID] = true
			if len(o.Responses) < 2 {
				t.Errorf("%s %s: want a success and a default response", method, path)
			}
		}
	}
	var registered []string
	for _, p := range m.Web.Routes() {
		method, path, ok := strings.Cut(p, " ")
		if ok && strings.HasPrefix(path, "/api/v1/") {
			registered = append(registered, method+" "+path)
		}
	}
	slices.Sort(documented)
	slices.Sort(registered)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in the OpenAPI document", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("documented operation %s is not a registered route", d)
		}
	}
	if len(registered) < 30 {
		t.Errorf("only %d routes registered: the check would be weak", len(registered))
	}
	// Every schema reference resolves.
	for _, ref := range regexp.MustCompile(`"#/components/schemas/([A-Za-z]+)"`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := doc.Components.Schemas[ref[1]]; !ok {
			t.Errorf("dangling $ref %s", ref[1])
		}
	}
}
