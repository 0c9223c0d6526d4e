package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// runApp is "junction app": the admin REST API of apps and their keys
// (/api/v1/admin/apps) from the command line. Like "junction health" it
// talks to a running server, so that revocations reach its live
// connections at once; the admin credential is --token (or
// JUNCTION_TOKEN), else a five-minute admin token minted with --data's key
// as "junction token" would.
func runApp(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		appUsage(stdout)
		if len(args) == 0 {
			return errors.New("app: a subcommand is required")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("app "+sub, flag.ContinueOnError)
	serverURL := fs.String("url", "", "server base URL (default http://ADDR, ADDR from JUNCTION_ADDR or 127.0.0.1:7700)")
	token := fs.String("token", "", "admin access token (default JUNCTION_TOKEN, else one minted with --data's key)")
	data := fs.String("data", "./data", "data directory whose signing key mints the admin token when no --token is given")
	alg := fs.String("alg", "HS256", "the server's auth.alg, to mint the admin token")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	var create protocol.AppCreateParams
	var scopes, caps, settingsFile, toolsFile string
	var keyTTL, overlap, ttl time.Duration
	var internal *bool
	var limit int
	switch sub {
	case "create":
		fs.StringVar(&create.ID, "id", "", "reverse-DNS app id (com.example.captions), required")
		fs.StringVar(&create.Name, "name", "", "display name, required")
		fs.StringVar(&create.Kind, "kind", "foreground", "foreground, background or system")
		fs.StringVar(&create.WebhookURL, "webhook", "", "base URL of the app's webhooks")
		fs.StringVar(&scopes, "scopes", "", "comma-separated scopes users may grant (read, write, ...)")
		fs.StringVar(&create.Priority, "priority", "", "output priority class: system, foreground, background, ambient (default: the kind's)")
		fs.StringVar(&caps, "capabilities", "", "comma-separated device capabilities the app requires")
		fs.StringVar(&create.Owner, "owner", "", "user id of the app's developer (default: the admin token's user)")
		fs.StringVar(&settingsFile, "settings-schema", "", "file holding the JSON Schema of the app's settings")
		fs.StringVar(&toolsFile, "tools", "", "file holding the JSON array of the app's tools ({name, description, params})")
		fs.DurationVar(&keyTTL, "key-ttl", 0, "lifetime of the first API key (default: no expiry)")
		fs.BoolVar(&create.Internal, "internal", false, "the app's webhooks may target loopback and private addresses (an app on your own network)")
	case "rotate-key":
		fs.DurationVar(&overlap, "overlap", 24*time.Hour, "how long the app's other keys keep working (0 ends them now)")
		fs.DurationVar(&ttl, "ttl", 0, "lifetime of the new key (default: no expiry)")
	case "rotate-webhook-secret":
		fs.DurationVar(&overlap, "overlap", 24*time.Hour, "how long the previous secret keeps signing beside the new one (0 drops it now)")
		fs.Func("internal", "true or false: mark the app internal or not (default: unchanged)", func(v string) error {
			b, err := strconv.ParseBool(v)
			internal = &b
			return err
		})
	case "deliveries":
		fs.IntVar(&limit, "limit", 50, "at most this many attempts, newest first (1..100)")
	case "outputs":
		fs.IntVar(&limit, "limit", 50, "at most this many outcomes, newest first (1..50)")
	case "installs", "list", "show", "revoke-key", "delete":
	default:
		appUsage(stderr)
		return fmt.Errorf("app: unknown subcommand %q", sub)
	}
	// Flags may come before or after the positional arguments.
	var pos []string
	for {
		if err := parseFlags(fs, "app "+sub, args, stderr); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	want := map[string]int{"create": 0, "list": 0, "show": 1, "rotate-key": 1, "revoke-key": 2, "delete": 1,
		"rotate-webhook-secret": 1, "deliveries": 1, "installs": 1, "outputs": 1}[sub]
	if len(pos) != want {
		return fmt.Errorf("app %s: want %d argument(s), got %d; run 'junction app --help'", sub, want, len(pos))
	}
	if *serverURL == "" {
		*serverURL = "http://" + healthAddr(envLookup(environ, "JUNCTION_ADDR"))
	}
	if *token == "" {
		*token = envLookup(environ, "JUNCTION_TOKEN")
	}
	if *token == "" {
		tok, err := adminToken(*data, *alg)
		if err != nil {
			return err
		}
		*token = tok
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &adminClient{base: strings.TrimRight(*serverURL, "/"), token: *token}
	esc := url.PathEscape
	switch sub {
	case "create":
		create.Scopes, create.Capabilities = splitList(scopes), splitList(caps)
		create.KeyTTLMs = keyTTL.Milliseconds()
		if settingsFile != "" {
			raw, err := os.ReadFile(settingsFile)
			if err != nil {
				return fmt.Errorf("app create: --settings-schema: %w", err)
			}
			create.SettingsSchema = raw
		}
		if toolsFile != "" {
			raw, err := os.ReadFile(toolsFile)
			if err != nil {
				return fmt.Errorf("app create: --tools: %w", err)
			}
			if err := json.Unmarshal(raw, &create.Tools); err != nil {
				return fmt.Errorf("app create: --tools %s: want a JSON array of {name, description, params}: %w", toolsFile, err)
			}
		}
		var res protocol.AppCreated
		raw, err := c.do(ctx, "POST", "/api/v1/admin/apps", create, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		printApp(stdout, res.App)
		if res.WebhookSecret != nil {
			fmt.Fprintf(stdout, "\nwebhook secret (verify signatures with it; shown only this once; internal %v):\n%s\n", res.WebhookSecret.Internal, res.WebhookSecret.Secret)
		}
		// The key last: scripts take the last line.
		fmt.Fprintf(stdout, "\nAPI key %s (shown only this once; store it now):\n%s\n", res.Key.AppKey.ID, res.Key.Key)
	case "list":
		all, raws, err := allPages(ctx, c, "/api/v1/admin/apps?limit=100&after=",
			func(p *protocol.AppList) ([]protocol.App, string) { return p.Apps, p.Next })
		if err != nil {
			return err
		}
		if *asJSON {
			return printRaw(stdout, bytes.Join(raws, nil), nil)
		}
		if len(all) == 0 {
			fmt.Fprintln(stdout, "no apps")
		}
		for _, a := range all {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", a.ID, a.Kind, strings.Join(a.Scopes, ","), a.Name)
		}
	case "show":
		var app protocol.App
		raw, err := c.do(ctx, "GET", "/api/v1/admin/apps/"+esc(pos[0]), nil, &app)
		if err != nil {
			return err
		}
		var keys protocol.AppKeyList
		kraw, err := c.do(ctx, "GET", "/api/v1/admin/apps/"+esc(pos[0])+"/keys", nil, &keys)
		if err != nil || *asJSON {
			return printRaw(stdout, append(append(raw, '\n'), kraw...), err)
		}
		printApp(stdout, app)
		fmt.Fprintln(stdout, "\nkeys:")
		for _, k := range keys.Keys {
			printKey(stdout, k)
		}
	case "rotate-key":
		ms := overlap.Milliseconds()
		var res protocol.AppKeySecret
		raw, err := c.do(ctx, "POST", "/api/v1/admin/apps/"+esc(pos[0])+"/keys", protocol.AppKeyRotateParams{ID: pos[0], OverlapMs: &ms, TTLMs: ttl.Milliseconds()}, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		fmt.Fprintf(stdout, "API key %s of %s (shown only this once; store it now); the other keys work until %s:\n%s\n",
			res.AppKey.ID, pos[0], time.Now().Add(overlap).UTC().Format(time.RFC3339), res.Key)
	case "rotate-webhook-secret":
		ms := overlap.Milliseconds()
		var res protocol.AppWebhookSecret
		raw, err := c.do(ctx, "POST", "/api/v1/admin/apps/"+esc(pos[0])+"/webhook-secret", protocol.AppWebhookRotateParams{ID: pos[0], OverlapMs: &ms, Internal: internal}, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		until := "now"
		if res.PreviousValidUntil != nil {
			until = res.PreviousValidUntil.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "webhook secret of %s (shown only this once; internal %v); the previous one signs until %s:\n%s\n", pos[0], res.Internal, until, res.Secret)
	case "deliveries":
		var res protocol.AppDeliveryList
		raw, err := c.do(ctx, "GET", "/api/v1/apps/"+esc(pos[0])+"/deliveries?limit="+strconv.Itoa(limit), nil, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		if len(res.Deliveries) == 0 {
			fmt.Fprintln(stdout, "no webhook attempts")
		}
		for _, d := range res.Deliveries {
			fmt.Fprintf(stdout, "%s\t%s #%d\t%s\t%d\t%dms\t%s\n", d.At.UTC().Format(time.RFC3339), d.Delivery, d.Attempt, d.Stage, d.Status, d.LatencyMs, d.Error)
		}
	case "installs":
		all, raws, err := allPages(ctx, c, "/api/v1/admin/apps/"+esc(pos[0])+"/installs?limit=100&after=",
			func(p *protocol.AppInstallDetailList) ([]protocol.AppInstallDetail, string) {
				return p.Installs, p.Next
			})
		if err != nil {
			return err
		}
		if *asJSON {
			return printRaw(stdout, bytes.Join(raws, nil), nil)
		}
		if len(all) == 0 {
			fmt.Fprintf(stdout, "no user has installed %s\n", pos[0])
		}
		for _, in := range all {
			last := "never started"
			if in.LastSessionAt != nil {
				last = "last session " + in.LastSessionAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%s\t%s\tinstalled %s\t%d active session(s)\t%s\n", in.UserID, strings.Join(in.Scopes, ","),
				in.CreatedAt.UTC().Format(time.RFC3339), in.ActiveSessions, last)
		}
	case "outputs":
		var res protocol.DeviceOutputs
		raw, err := c.do(ctx, "GET", "/api/v1/admin/devices/"+esc(pos[0])+"/outputs?limit="+strconv.Itoa(limit), nil, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		declared := "no surfaces declared there now"
		if res.Declared {
			declared = "surfaces declared there now"
		}
		fmt.Fprintf(stdout, "device %s on node %s (%s; the record is that node's):\n", res.DeviceID, res.NodeID, declared)
		if len(res.Outcomes) == 0 {
			fmt.Fprintln(stdout, "no output outcomes")
		}
		for _, o := range res.Outcomes {
			outcome := o.Outcome
			if o.Reason != "" {
				outcome += " (" + o.Reason + ")"
			}
			if o.EndReason != "" {
				outcome += ", ended " + o.EndReason
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\t%s\n", o.DecidedAt.UTC().Format(time.RFC3339), o.AppID, o.RequestID, o.Surface, o.Priority, outcome)
		}
	case "revoke-key":
		var k protocol.AppKey
		raw, err := c.do(ctx, "DELETE", "/api/v1/admin/apps/"+esc(pos[0])+"/keys/"+esc(pos[1]), nil, &k)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		fmt.Fprint(stdout, "revoked: ")
		printKey(stdout, k)
	case "delete":
		var res protocol.AppDeleted
		raw, err := c.do(ctx, "DELETE", "/api/v1/admin/apps/"+esc(pos[0]), nil, &res)
		if err != nil || *asJSON {
			return printRaw(stdout, raw, err)
		}
		fmt.Fprintf(stdout, "deleted %s (%d installation(s) removed)\n", pos[0], res.Uninstalled)
	}
	return nil
}

func appUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: junction app SUBCOMMAND [flags]

Manage the apps of a running server through its admin REST API.

  create --id ID --name NAME [--kind K] [--webhook URL] [--scopes a,b] [--priority P]
         [--capabilities a,b] [--owner U] [--settings-schema FILE] [--tools FILE] [--key-ttl D]
         [--internal]          register an app; prints its first API key and its
                               webhook secret, once
  list                         the registered apps
  show ID                      an app and its keys (never their secrets)
  rotate-key ID [--overlap 24h] [--ttl D]
                               add a key; the other keys keep working for the overlap
  revoke-key ID KEYID          revoke a key at once (its connections are closed)
  delete ID                    delete an app, its keys and installations
  rotate-webhook-secret ID [--overlap 24h] [--internal=true|false]
                               replace the webhook signing secret; prints it, once
  deliveries ID [--limit 50]   the app's recent webhook attempts, newest first
  installs ID                  the users who installed the app: their grant and sessions
  outputs DEVICE [--limit 50]  the device's recent output outcomes, newest first (the
                               record of the node answering, in memory)

Every subcommand takes --url (default http://$JUNCTION_ADDR or
http://127.0.0.1:7700), --token (default $JUNCTION_TOKEN; else an admin token
is minted with --data's key, default ./data, --alg HS256) and --json.
`)
}

// adminToken mints a five-minute admin token with data's signing key.
func adminToken(data, alg string) (string, error) {
	if _, err := os.Stat(data); err != nil {
		return "", fmt.Errorf("app: no --token and no data directory %s to mint one: %w (pass --token, set JUNCTION_TOKEN, or --data)", data, err)
	}
	cfg := &Config{Data: data, Auth: AuthConfig{Alg: alg}}
	cfg.setDefaults()
	tokens, _, err := auth.LoadTokens(cfg.Data, tokenConfig(cfg))
	if err != nil {
		return "", err
	}
	tok, _, err := tokens.Issue(auth.Claims{UserID: "admin", Kind: "machine", Scopes: []string{auth.ScopeAdmin}}, 5*time.Minute)
	return tok, err
}

// adminClient calls the admin REST API.
type adminClient struct {
	base, token string
}

// allPages reads every page of an admin listing: GET path+cursor until a
// page names no next cursor. It returns the items and each page's body.
func allPages[P, T any](ctx context.Context, c *adminClient, path string, items func(*P) ([]T, string)) ([]T, [][]byte, error) {
	var all []T
	var raws [][]byte
	for after := ""; ; {
		var page P
		raw, err := c.do(ctx, "GET", path+url.QueryEscape(after), nil, &page)
		if err != nil {
			return nil, nil, err
		}
		raws = append(raws, raw)
		got, next := items(&page)
		all = append(all, got...)
		if next == "" {
			return all, raws, nil
		}
		after = next
	}
}

// do sends body as JSON and decodes a 2xx answer into out; any other
// answer is an error carrying the server's message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("app: read the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error protocol.Error `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return nil, fmt.Errorf("app: %s %s: %s: %s", method, path, eb.Error.Code, eb.Error.Message)
		}
		return nil, fmt.Errorf("app: %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("app: decode the answer: %w", err)
		}
	}
	return raw, nil
}

func printRaw(w io.Writer, raw []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = w.Write(append(bytes.TrimSpace(raw), '\n'))
	return err
}

func printApp(w io.Writer, a protocol.App) {
	fmt.Fprintf(w, "id:           %s\nname:         %s\nkind:         %s\npriority:     %s\nscopes:       %s\n",
		a.ID, a.Name, a.Kind, a.Priority, strings.Join(a.Scopes, ","))
	fmt.Fprintf(w, "webhook:      %s\ncapabilities: %s\nowner:        %s\ntools:        %d\ncreated:      %s\n",
		a.WebhookURL, strings.Join(a.Capabilities, ","), a.Owner, len(a.Tools), a.CreatedAt.Format(time.RFC3339))
}

func printKey(w io.Writer, k protocol.AppKey) {
	state := "active"
	switch {
	case k.RevokedAt != nil:
		state = "revoked " + k.RevokedAt.Format(time.RFC3339)
	case !k.Active:
		state = "expired"
	}
	exp, used := "never", "never"
	if k.ExpiresAt != nil {
		exp = k.ExpiresAt.Format(time.RFC3339)
	}
	if k.LastUsedAt != nil {
		used = k.LastUsedAt.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "  %s  %s  expires %s  last used %s\n", k.ID, state, exp, used)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
