package client

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// TestReadmeSnippet holds the README's Go snippet to Example_readme
// (example_readme_test.go), which the compiler checks: the snippet is that
// file with "package main" and "func main()".
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```go\n(package main\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md: no ```go block starting with \"package main\"")
	}
	example, err := os.ReadFile("example_readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(example), "package client_test\n", "package main\n", 1)
	want = strings.Replace(want, "func Example_readme() {", "func main() {", 1)
	if got := string(m[1]); got != want {
		t.Errorf("README.md's Go snippet differs from example_readme_test.go (with package main and func main):\n--- README\n%s\n--- want\n%s", got, want)
	}
}

// TestNilClientMethods: a program that ignores Dial's error calls methods
// on the nil *Client it returned; they return ErrNilClient, not a panic.
func TestNilClientMethods(t *testing.T) {
	ts := newTestServer(t)
	opts := ts.options()
	opts.Token = "bad"
	c, err := Dial(t.Context(), opts)
	if err == nil {
		t.Fatal("Dial with a bad token: got nil error")
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"Call":       func() error { return c.Call(ctx, "sys.ping", nil, nil) },
		"CallIdem":   func() error { return c.CallIdem(ctx, "sys.ping", nil, "k", nil) },
		"CallRaw":    func() error { _, err := c.CallRaw(ctx, "sys.ping", nil); return err },
		"Send":       func() error { return c.Send(ctx, &protocol.Frame{}) },
		"Subscribe":  func() error { _, err := c.Subscribe(ctx, "public:x", nil); return err },
		"Publish":    func() error { _, _, err := c.Publish(ctx, "public:x", 1); return err },
		"CallDevice": func() error { return c.CallDevice(ctx, "d", "m", nil, nil) },
		"Serve":      func() error { return c.Serve("m", nil) },
		"Session":    func() error { _, err := c.Session(ctx, "s"); return err },
		"Connect":    func() error { return c.Connect(ctx) },
		"Close":      func() error { return c.Close() },
	}
	for name, fn := range calls {
		t.Run(name, func(t *testing.T) {
			if err := fn(); !errors.Is(err, ErrNilClient) {
				t.Errorf("got %v, want ErrNilClient", err)
			}
		})
	}
}
