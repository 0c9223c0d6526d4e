package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/apps"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/internal/supervise"
	"github.com/junctionhq/junction/internal/web"
)

// Config is the whole server configuration. Each part belongs to the package
// that uses it; this type only composes them. Every setting can come from
// the YAML file (--config), a JUNCTION_* environment variable, or a flag,
// with the precedence flags > environment > file > default.
type Config struct {
	Addr        string      `yaml:"addr" doc:"listen address HOST:PORT (default 127.0.0.1:7700)"`
	AllowPublic bool        `yaml:"allow_public" doc:"allow listening on a non-loopback address such as 0.0.0.0"`
	Data        string      `yaml:"data" doc:"data directory for the signing secret and the SQLite database (default ./data)"`
	Database    string      `yaml:"database" doc:"database: empty for SQLite in the data directory; postgres://user:pass@host/db or a PostgreSQL key=value string (host=... dbname=...); sqlite:PATH or a SQLite path starting with /, ./ or ../"`
	Broker      string      `yaml:"broker" doc:"broker: empty (or memory) for one node's in-memory broker; redis://[user:pass@]host:port[/db] for the Redis broker of a cluster, several comma-separated URLs for independent shards (every node lists the same ones in the same order; see docs/cluster.md)"`
	LogLevel    string      `yaml:"log_level" doc:"debug, info, warn or error (default info)"`
	LogFormat   string      `yaml:"log_format" doc:"text or json (default: text on a terminal, json otherwise)"`
	PprofAddr   string      `yaml:"pprof_addr" doc:"serve Go's net/http/pprof profiles on this loopback HOST:PORT (default off)"`
	Auth        AuthConfig  `yaml:"auth"`
	Store       StoreConfig `yaml:"store"`
	Hub         hub.Config  `yaml:"hub"`
	Apps        apps.Config `yaml:"apps"`
	Web         web.Config  `yaml:"web"`
	// IoT configures /ws/iot, the compact protocol's endpoint for devices
	// (docs/iot.md); the hub serves it.
	IoT hub.IoTConfig `yaml:"iot"`
	// BrokerRouteCacheTTL is cluster.Config.RouteCacheTTL.
	BrokerRouteCacheTTL time.Duration `yaml:"broker_route_cache_ttl" doc:"how long a node trusts a device's claim and its node's lease read from Redis to route an RPC call to another node; a stale route is detected and looked up again (default 1s, negative disables; docs/cluster.md)"`
	// Voice configures LiveKit-compatible voice tokens (account package).
	Voice account.VoiceConfig `yaml:"voice"`
	// Services tunes the supervisor of the background services.
	Services supervise.Config `yaml:"services"`
	// Schedule holds the scheduled jobs of the configuration file and the
	// scheduler's settings.
	Schedule schedule.Config `yaml:"schedule"`
	// Proxy forwards methods and namespace events to backends (reloadable).
	Proxy proxy.Config `yaml:"proxy"`
	// ConfigPoll is how often the configuration file is checked for a
	// change, which reloads it as SIGHUP does (reload.go).
	ConfigPoll time.Duration `yaml:"config_poll" doc:"how often the --config file's modification time and size are checked; a change reloads the reloadable settings as SIGHUP does (default 2s, negative disables)"`

	// file is the configuration file loadConfig read, "" for none.
	file string
}

// AuthConfig configures token signing.
type AuthConfig struct {
	Alg        string        `yaml:"alg" doc:"access token algorithm: HS256 (default, secret in DATA/secret.key) or EdDSA (key in DATA/ed25519.key, see 'junction keygen')"`
	Issuer     string        `yaml:"issuer" doc:"token issuer claim (default junction)"`
	Audience   string        `yaml:"audience" doc:"token audience claim written at issue; a token carrying another audience is refused (default none: tokens carry no aud, and any aud is refused)"`
	AccessTTL  time.Duration `yaml:"access_ttl" doc:"lifetime of access tokens issued at login (default 1h)"`
	RefreshTTL time.Duration `yaml:"refresh_ttl" doc:"lifetime of refresh tokens (default 720h)"`
	// APIKeyPepperFile names the pepper of API keys when it is not
	// DATA/apikey-pepper.key (a cluster's nodes share one).
	APIKeyPepperFile string `yaml:"api_key_pepper_file" doc:"file holding the secret pepper that keys the MACs of app API keys (default DATA/apikey-pepper.key, created at first start; every node of a cluster needs the same; changing it invalidates every API key)"`
	// Challenges bounds the login challenges (auth package's config).
	Challenges auth.ChallengeConfig `yaml:"challenges"`
}

// StoreConfig bounds what the database keeps. Zero selects the store's
// default.
type StoreConfig struct {
	MaxValueBytes    int           `yaml:"max_value_bytes" doc:"largest encrypted field (metadata, state, message body) accepted, in bytes (default 1048576)"`
	UpdateRetention  int           `yaml:"update_retention" doc:"updates kept per account for sync; older ones answer reset (default 10000)"`
	UpdateMaxAge     time.Duration `yaml:"update_max_age" doc:"also drop updates older than this (default: kept regardless of age)"`
	MaxConns         int           `yaml:"max_conns" doc:"database connections: the PostgreSQL pool or the SQLite readers (default 16 PostgreSQL, 4 SQLite)"`
	ConnectTimeout   time.Duration `yaml:"connect_timeout" doc:"PostgreSQL: how long opening one connection may take (default 5s; a connect_timeout in the DSN wins)"`
	StatementTimeout time.Duration `yaml:"statement_timeout" doc:"PostgreSQL: statement_timeout of every connection, a longer statement is cancelled by the server (default none)"`
	ConnMaxLifetime  time.Duration `yaml:"conn_max_lifetime" doc:"PostgreSQL: a pool connection is closed this long after it opened (default 30m, negative never)"`
	ConnMaxIdleTime  time.Duration `yaml:"conn_max_idle_time" doc:"PostgreSQL: a pool connection idle this long is closed (default 5m, negative never)"`
	DeviceCacheTTL   time.Duration `yaml:"device_cache_ttl" doc:"how often the revoked devices and logins held in memory are read again from the database: this node's revocations are refused at once, another node's revocation or logout after at most this (default 1s; negative: every check asks the database)"`
}

// options returns the store options for c, on top of base (what an
// embedder or a test set).
func (c StoreConfig) options(base store.Options) store.Options {
	set := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	set(&base.MaxValueBytes, c.MaxValueBytes)
	set(&base.UpdateRetention, c.UpdateRetention)
	set(&base.MaxConns, c.MaxConns)
	if c.UpdateMaxAge != 0 {
		base.UpdateMaxAge = c.UpdateMaxAge
	}
	if c.DeviceCacheTTL != 0 {
		base.DeviceCacheTTL = c.DeviceCacheTTL
	}
	for dst, v := range map[*time.Duration]time.Duration{&base.ConnectTimeout: c.ConnectTimeout,
		&base.StatementTimeout: c.StatementTimeout, &base.ConnMaxLifetime: c.ConnMaxLifetime, &base.ConnMaxIdleTime: c.ConnMaxIdleTime} {
		if v != 0 {
			*dst = v
		}
	}
	return base
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:7700"
	}
	if c.Data == "" {
		c.Data = "./data"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Auth.Alg == "" {
		c.Auth.Alg = "HS256"
	}
	if c.Auth.Issuer == "" {
		c.Auth.Issuer = "junction"
	}
	if c.Auth.AccessTTL == 0 {
		c.Auth.AccessTTL = time.Hour
	}
	if c.Auth.RefreshTTL == 0 {
		c.Auth.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.ConfigPoll == 0 {
		c.ConfigPoll = 2 * time.Second
	}
}

// brokerURLs returns the Redis URLs of the broker setting, or none for the
// in-memory broker.
func (c *Config) brokerURLs() ([]string, error) {
	if c.Broker == "" || c.Broker == "memory" {
		return nil, nil
	}
	return cluster.ParseURLs(c.Broker)
}

// validate checks the settings that cmd owns; the parts validate their own.
func (c *Config) validate() error {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("addr %q: want HOST:PORT: %w", c.Addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("addr %q: bad port", c.Addr)
	}
	if !c.AllowPublic && !loopbackHost(host) {
		return fmt.Errorf("addr %q listens beyond this machine; pass --allow-public (or JUNCTION_ALLOW_PUBLIC=true) to do that on purpose", c.Addr)
	}
	if c.PprofAddr != "" {
		h, _, err := net.SplitHostPort(c.PprofAddr)
		if err != nil || !loopbackHost(h) {
			return fmt.Errorf("pprof_addr %q: want a loopback HOST:PORT such as 127.0.0.1:6060 (profiles reveal internals)", c.PprofAddr)
		}
	}
	if c.Database != "" {
		// The address is not repeated: it may hold a password.
		if _, err := store.ParseDSN(c.Database); err != nil {
			return fmt.Errorf("database: %v", err)
		}
	}
	if _, err := c.brokerURLs(); err != nil {
		return fmt.Errorf("broker: %v", err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return fmt.Errorf("log_format %q: want text or json", c.LogFormat)
	}
	switch c.Auth.Alg {
	case "HS256", "EdDSA":
	default:
		return fmt.Errorf("auth.alg %q: want HS256 or EdDSA", c.Auth.Alg)
	}
	if c.Auth.AccessTTL < 0 || c.Auth.RefreshTTL < 0 {
		return fmt.Errorf("auth.access_ttl and auth.refresh_ttl must not be negative")
	}
	if c.Auth.AccessTTL > c.Auth.RefreshTTL {
		// A revoked login is remembered until its last refresh token
		// expires (store.LoginRevoked): an access token living longer
		// could outlive that memory.
		return fmt.Errorf("auth.access_ttl %v is longer than auth.refresh_ttl %v: an access token must not outlive its login's refresh tokens", c.Auth.AccessTTL, c.Auth.RefreshTTL)
	}
	if err := c.Auth.Challenges.Validate(); err != nil {
		return err
	}
	for _, h := range c.Web.PublicHosts {
		if err := auth.CheckHostName(h); err != nil {
			return fmt.Errorf("web.public_hosts: %q: %w", h, err)
		}
	}
	for _, p := range c.Web.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			return fmt.Errorf("web.trusted_proxies: %q is not a CIDR range: %w", p, err)
		}
	}
	for name, v := range map[string]int{"store.max_value_bytes": c.Store.MaxValueBytes, "store.update_retention": c.Store.UpdateRetention, "store.max_conns": c.Store.MaxConns} {
		if v < 0 {
			return fmt.Errorf("%s %d: must not be negative", name, v)
		}
	}
	if c.Store.ConnectTimeout < 0 || c.Store.StatementTimeout < 0 {
		return fmt.Errorf("store.connect_timeout and store.statement_timeout must not be negative")
	}
	if c.Store.UpdateMaxAge < 0 {
		return fmt.Errorf("store.update_max_age %v: must not be negative", c.Store.UpdateMaxAge)
	}
	if err := c.Web.ValidateLimits(); err != nil {
		return err
	}
	if err := c.Hub.Validate(); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := c.IoT.Validate(); err != nil {
		return fmt.Errorf("iot: %w", err)
	}
	if err := c.Voice.Validate(); err != nil {
		return err
	}
	if err := c.Services.Validate(); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	if err := c.Schedule.Validate(); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	if err := c.Proxy.Validate(); err != nil {
		return err
	}
	return nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// setting is one leaf of Config, addressed by its YAML path.
type setting struct {
	path string // "hub.heartbeat_interval"
	doc  string
	typ  reflect.Type
}

func (s setting) env() string {
	return "JUNCTION_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(s.path))
}

func (s setting) flag() string {
	return strings.ReplaceAll(strings.ReplaceAll(s.path, ".", "-"), "_", "-")
}

// settings lists every leaf of Config in declaration order.
func settings() []setting {
	var out []setting
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				continue // lists of objects (hub.namespaces) are set in the config file only
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, path+".")
				continue
			}
			out = append(out, setting{path: path, doc: f.Tag.Get("doc"), typ: f.Type})
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

// field returns the addressable field of cfg at a settings path.
func field(cfg *Config, path string) reflect.Value {
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(path, ".") {
		t := v.Type()
		found := false
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == part {
				v = v.Field(i)
				found = true
				break
			}
		}
		if !found {
			return reflect.Value{}
		}
	}
	return v
}

// setString parses s into the field according to its type.
func setString(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration like 30s or 5m")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// flagValue records a flag's raw value; values are applied after the file
// and the environment so that flags win.
type flagValue struct {
	s      setting
	set    *map[string]string
	isBool bool
}

func (f *flagValue) String() string   { return "" }
func (f *flagValue) IsBoolFlag() bool { return f.isBool }
func (f *flagValue) Set(v string) error {
	if err := setString(reflect.New(f.s.typ).Elem(), v); err != nil {
		return err
	}
	(*f.set)[f.s.path] = v
	return nil
}

// loadConfig builds the configuration from a config file, the environment
// and the command line, in rising precedence, and validates it.
func loadConfig(name string, args []string, environ []string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configFile := fs.String("config", "", "YAML configuration file (unknown keys are rejected)")
	flagSet := map[string]string{}
	all := settings()
	for _, s := range all {
		fs.Var(&flagValue{s: s, set: &flagSet, isBool: s.typ.Kind() == reflect.Bool}, s.flag(), s.doc)
	}
	fs.Usage = func() { configUsage(fs.Output(), name, all) }
	if err := parseFlags(fs, name, args, stderr); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg := &Config{}
	file := *configFile
	defer func() { cfg.file = file }()
	if file == "" {
		file = envLookup(environ, "JUNCTION_CONFIG")
	}
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, explainYAML(file, raw, err)
		}
	}
	known := map[string]setting{}
	for _, s := range all {
		known[s.env()] = s
	}
	var envKeys []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "JUNCTION_") || k == "JUNCTION_CONFIG" || strings.HasPrefix(k, "JUNCTION_TEST_") || k == "JUNCTION_REQUIRE_POSTGRES" || k == "JUNCTION_REQUIRE_REDIS" {
			continue
		}
		s, ok := known[k]
		if !ok {
			return nil, fmt.Errorf("unknown environment setting %s (see --help for the list)", k)
		}
		if err := setString(field(cfg, s.path), v); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", k, v, err)
		}
		envKeys = append(envKeys, k)
	}
	for path, v := range flagSet {
		s := known["JUNCTION_"+strings.ToUpper(strings.ReplaceAll(path, ".", "_"))]
		if err := setString(field(cfg, path), v); err != nil {
			return nil, fmt.Errorf("--%s=%q: %w", s.flag(), v, err)
		}
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func envLookup(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func configUsage(w io.Writer, name string, all []setting) {
	fmt.Fprintf(w, "Usage: junction %s [flags]\n\n", name)
	fmt.Fprintf(w, "Every setting can be given as a flag, a JUNCTION_* environment variable, or a key in\n")
	fmt.Fprintf(w, "the YAML file named by --config (or JUNCTION_CONFIG). Precedence: flag > environment > file.\n")
	fmt.Fprintf(w, "Unknown keys and unknown JUNCTION_* variables are rejected.\n\n")
	fmt.Fprintf(w, "  --config FILE\n        YAML configuration file\n")
	sorted := append([]setting(nil), all...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return strings.Count(sorted[i].path, ".") < strings.Count(sorted[j].path, ".")
	})
	for _, s := range sorted {
		typ := s.typ.String()
		switch {
		case s.typ == reflect.TypeOf(time.Duration(0)):
			typ = "duration"
		case s.typ.Kind() == reflect.Slice:
			typ = "list"
		}
		fmt.Fprintf(w, "  --%s %s\n        %s\n        env %s, file key %s\n", s.flag(), typ, s.doc, s.env(), s.path)
	}
}
