package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "junction.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:8001\nhub:\n  heartbeat_interval: 20s\n  max_subscriptions: 50\nweb:\n  allowed_origins: [\"https://a.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	iotFile := filepath.Join(dir, "iot.yaml")
	if err := os.WriteFile(iotFile, []byte("iot:\n  max_frame_bytes: 2048\n  heartbeat_interval: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("adr: 127.0.0.1:8001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jobs := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(jobs, []byte("schedule:\n  history: 7\n  jobs:\n    - name: brief\n      cron: \"0 7 * * 1-5\"\n      time_zone: Europe/Paris\n      publish: {topic: \"public:news\", data: {text: hi, n: 2}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badJob := filepath.Join(dir, "badjob.yaml")
	if err := os.WriteFile(badJob, []byte("schedule:\n  jobs:\n    - name: brief\n      cron: \"0 7 * * 1-5\"\n      time_zone: Mars/Base\n      publish: {topic: \"public:news\", data: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     []string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			if c.Addr != "127.0.0.1:7700" || c.Data != "./data" || c.Auth.Alg != "HS256" || c.Auth.AccessTTL != time.Hour {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "file", args: []string{"--config", file}, check: func(t *testing.T, c *Config) {
			if c.Addr != "127.0.0.1:8001" || c.Hub.HeartbeatInterval != 20*time.Second || c.Hub.MaxSubscriptions != 50 || len(c.Web.AllowedOrigins) != 1 {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "env beats file", args: []string{"--config", file}, env: []string{"JUNCTION_ADDR=127.0.0.1:8002", "JUNCTION_HUB_HEARTBEAT_INTERVAL=5s"},
			check: func(t *testing.T, c *Config) {
				if c.Addr != "127.0.0.1:8002" || c.Hub.HeartbeatInterval != 5*time.Second || c.Hub.MaxSubscriptions != 50 {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "flag beats env", args: []string{"--config", file, "--addr", "127.0.0.1:8003", "--hub-heartbeat-interval=7s"}, env: []string{"JUNCTION_ADDR=127.0.0.1:8002"},
			check: func(t *testing.T, c *Config) {
				if c.Addr != "127.0.0.1:8003" || c.Hub.HeartbeatInterval != 7*time.Second {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "iot section", args: []string{"--config", iotFile, "--iot-heartbeat-interval=15s"}, env: []string{"JUNCTION_IOT_MAX_QUEUE_FRAMES=32"},
			check: func(t *testing.T, c *Config) {
				if c.IoT.MaxFrameBytes != 2048 || c.IoT.HeartbeatInterval != 15*time.Second || c.IoT.MaxQueueFrames != 32 {
					t.Errorf("got iot %+v", c.IoT)
				}
			}},
		{name: "bad iot frame limit", args: []string{"--iot-max-frame-bytes=10"}, wantErr: "iot: max_frame_bytes"},
		{name: "config file from env", env: []string{"JUNCTION_CONFIG=" + file}, check: func(t *testing.T, c *Config) {
			if c.Addr != "127.0.0.1:8001" {
				t.Errorf("got addr %q", c.Addr)
			}
		}},
		{name: "list from env", env: []string{"JUNCTION_WEB_ALLOWED_ORIGINS=https://a.example, https://*.b.example"}, check: func(t *testing.T, c *Config) {
			if len(c.Web.AllowedOrigins) != 2 || c.Web.AllowedOrigins[1] != "https://*.b.example" {
				t.Errorf("got %q", c.Web.AllowedOrigins)
			}
		}},
		{name: "bool flag", args: []string{"--web-lockdown"}, check: func(t *testing.T, c *Config) {
			if !c.Web.Lockdown {
				t.Error("lockdown not set")
			}
		}},
		{name: "unknown file key", args: []string{"--config", bad}, wantErr: "line 1: unknown key adr (run 'junction serve --help' for the keys)"},
		{name: "unknown env key", env: []string{"JUNCTION_ADR=x"}, wantErr: "unknown environment setting JUNCTION_ADR"},
		{name: "unknown flag", args: []string{"--adr", "x"}, wantErr: "flag provided but not defined"},
		{name: "bad duration", env: []string{"JUNCTION_HUB_HEARTBEAT_INTERVAL=soon"}, wantErr: "want a duration"},
		{name: "bad int", args: []string{"--hub-max-subscriptions", "many"}, wantErr: "want an integer"},
		{name: "public address needs a flag", args: []string{"--addr", "0.0.0.0:7700"}, wantErr: "--allow-public"},
		{name: "public address allowed", args: []string{"--addr", "0.0.0.0:7700", "--allow-public"}, check: func(t *testing.T, c *Config) {
			if c.Addr != "0.0.0.0:7700" {
				t.Errorf("got %q", c.Addr)
			}
		}},
		{name: "bad addr", args: []string{"--addr", "nope"}, wantErr: "want HOST:PORT"},
		{name: "bad alg", args: []string{"--auth-alg", "RS256"}, wantErr: "want HS256 or EdDSA"},
		{name: "bad proxy", args: []string{"--web-trusted-proxies", "10.0.0.1"}, wantErr: "not a CIDR range"},
		{name: "store limits", args: []string{"--store-update-retention", "500", "--store-device-cache-ttl", "-1s"},
			env: []string{"JUNCTION_STORE_MAX_VALUE_BYTES=4096", "JUNCTION_STORE_UPDATE_MAX_AGE=48h"},
			check: func(t *testing.T, c *Config) {
				o := c.Store.options(store.Options{MaxConns: 3})
				if o.UpdateRetention != 500 || o.MaxValueBytes != 4096 || o.UpdateMaxAge != 48*time.Hour ||
					o.DeviceCacheTTL != -time.Second || o.MaxConns != 3 {
					t.Errorf("got store options %+v", o)
				}
			}},
		{name: "negative store limit", args: []string{"--store-update-retention", "-5"}, wantErr: "store.update_retention -5: must not be negative"},
		{name: "transport from env", env: []string{"JUNCTION_HUB_TRANSPORT=portable"}, check: func(t *testing.T, c *Config) {
			if c.Hub.Transport != "portable" {
				t.Errorf("got hub.transport %q, want portable", c.Hub.Transport)
			}
		}},
		{name: "transport flag beats env", args: []string{"--hub-transport", "portable"}, env: []string{"JUNCTION_HUB_TRANSPORT=epoll"}, check: func(t *testing.T, c *Config) {
			if c.Hub.Transport != "portable" {
				t.Errorf("got hub.transport %q, want portable", c.Hub.Transport)
			}
		}},
		{name: "bad transport", args: []string{"--hub-transport", "kqueue"}, wantErr: `hub: transport "kqueue": want "epoll" or "portable"`},
		{name: "pprof beyond loopback", args: []string{"--pprof-addr", "0.0.0.0:6060"}, wantErr: "want a loopback HOST:PORT"},
		{name: "scheduled jobs", args: []string{"--config", jobs}, check: func(t *testing.T, c *Config) {
			if c.Schedule.History != 7 || len(c.Schedule.Jobs) != 1 || c.Schedule.Jobs[0].TimeZone != "Europe/Paris" || c.Schedule.Jobs[0].Publish.Topic != "public:news" {
				t.Errorf("got schedule %+v", c.Schedule)
			}
		}},
		{name: "bad scheduled job", args: []string{"--config", badJob}, wantErr: `schedule: jobs[0] (brief): time_zone: unknown IANA time zone "Mars/Base"`},
		{name: "voice needs all three", env: []string{"JUNCTION_VOICE_URL=wss://v.example"}, wantErr: "voice: url, api_key and api_secret go together"},
		{name: "voice secret too short", env: []string{"JUNCTION_VOICE_URL=wss://v.example", "JUNCTION_VOICE_API_KEY=k", "JUNCTION_VOICE_API_SECRET=short"}, wantErr: "api_secret is shorter than 32 bytes"},
		{name: "voice ttl over max", env: []string{"JUNCTION_VOICE_DEFAULT_TTL=7h"}, wantErr: "default_ttl 7h0m0s is over max_ttl 6h0m0s"},
		{name: "negative backoff", args: []string{"--services-min-backoff", "-1s"}, wantErr: "services: min_backoff -1s: must not be negative"},
		{name: "redis broker shards", args: []string{"--broker", "redis://127.0.0.1:6379, redis://:secret@10.0.0.2:6380/1"}, check: func(t *testing.T, c *Config) {
			urls, err := c.brokerURLs()
			if err != nil || len(urls) != 2 || urls[1] != "redis://:secret@10.0.0.2:6380/1" {
				t.Errorf("got broker urls %q, %v", urls, err)
			}
		}},
		{name: "memory broker", env: []string{"JUNCTION_BROKER=memory"}, check: func(t *testing.T, c *Config) {
			if urls, err := c.brokerURLs(); err != nil || urls != nil {
				t.Errorf("got broker urls %q, %v, want none (memory)", urls, err)
			}
		}},
		{name: "bad broker", args: []string{"--broker", "redis://:hunter2@host:notaport"}, wantErr: "broker: redis url \"redis://***@host:notaport\": invalid port \":notaport\" after host"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "none.yaml")}, wantErr: "read config"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := loadConfig("serve", tt.args, tt.env, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			tt.check(t, c)
		})
	}
}

// TestServeHelpListsEverySetting keeps --help complete: every setting, its
// environment variable and its documentation appear.
func TestServeHelpListsEverySetting(t *testing.T) {
	var stderr bytes.Buffer
	_, err := loadConfig("serve", []string{"--help"}, nil, &stderr)
	if err == nil {
		t.Fatal("--help: want flag.ErrHelp")
	}
	help := stderr.String()
	for _, s := range settings() {
		if s.doc == "" {
			t.Errorf("setting %s has no doc tag", s.path)
		}
		for _, want := range []string{"--" + s.flag(), s.env()} {
			if !strings.Contains(help, want) {
				t.Errorf("help does not mention %s", want)
			}
		}
	}
}

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"token", "--data", dir, "--user", "alice", "--device", "d1", "--kind", "phone", "--scope", "read,rpc.serve", "--ttl", "10m"}, nil, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	tok := strings.TrimSpace(out.String())
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("stdout: got %q, want only a JWT", out.String())
	}
	cfg := &Config{Data: dir}
	cfg.setDefaults()
	tokens, _, err := auth.LoadTokens(cfg.Data, tokenConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	p, err := tokens.Verify(tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if p.UserID != "alice" || p.DeviceID != "d1" || p.Kind != "phone" || !p.HasScope("rpc.serve") || p.HasScope("write") {
		t.Errorf("principal: got %+v", p)
	}
	if ttl := time.Until(p.ExpiresAt()); ttl < 9*time.Minute || ttl > 11*time.Minute {
		t.Errorf("expiry in %v, want about 10m", ttl)
	}
	if code := run(t.Context(), []string{"token", "--data", dir}, nil, &out, &errOut); code == 0 {
		t.Error("token without --user: want a failure")
	}
}

func TestKeygenAndEdDSA(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"keygen", "--data", dir}, nil, &out, &errOut); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, errOut.String())
	}
	if st, err := os.Stat(filepath.Join(dir, auth.EdKeyFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", st, err)
	}
	if code := run(t.Context(), []string{"keygen", "--data", dir}, nil, &out, &errOut); code == 0 {
		t.Error("second keygen overwrote the key")
	}
	out.Reset()
	if code := run(t.Context(), []string{"token", "--data", dir, "--alg", "EdDSA", "--user", "u"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("token exit %d: %s", code, errOut.String())
	}
	m := startServer(t, func(c *Config) { c.Data = dir; c.Auth.Alg = "EdDSA" })
	if _, err := m.Tokens.Verify(strings.TrimSpace(out.String())); err != nil {
		t.Errorf("server with EdDSA refuses the minted token: %v", err)
	}
}

type failingService struct{ started, stopped *int }

func (s failingService) Name() string { return "failing" }
func (s failingService) Start(ctx context.Context) error {
	*s.started++
	return errors.New("boom")
}
func (s failingService) Stop(ctx context.Context) error { *s.stopped++; return nil }

type okService struct{ started, stopped *int }

func (s okService) Name() string                    { return "ok" }
func (s okService) Start(ctx context.Context) error { *s.started++; return nil }
func (s okService) Stop(ctx context.Context) error  { *s.stopped++; return nil }

func TestBootServices(t *testing.T) {
	var fs, fstop, os_, ostop int
	m := startServer(t, nil, func(m *Main) {
		m.AddService(failingService{&fs, &fstop})
		m.AddService(okService{&os_, &ostop})
	})
	if fs != 1 || os_ != 1 {
		t.Fatalf("starts: failing %d, ok %d; want 1 each", fs, os_)
	}
	// The server serves despite the failed service.
	dialClient(t, m, "alice", "", "browser")
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fstop != 0 || ostop != 1 {
		t.Errorf("stops: failing %d, ok %d; want 0 and 1", fstop, ostop)
	}
}
