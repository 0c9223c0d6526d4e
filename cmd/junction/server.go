package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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

// Service is a boot service: something that runs beside the server and
// starts after the listener is up. A service that fails to start is logged
// and does not stop the others or the server.
type Service interface {
	Name() string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Main is the whole server, wired. End-to-end tests start it in-process on
// 127.0.0.1:0.
type Main struct {
	Config   *Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Tokens   *auth.Tokens
	Auth     *auth.Authenticator
	Network  *auth.NetworkPolicy
	Hub      *hub.Hub
	Broker   hub.Broker
	Web      *web.Server
	// Account is the account/data application, mounted by Web over REST and
	// registered in Hub's method table.
	Account *account.Service
	// Apps is the apps platform (apps, API keys, installations), mounted
	// like Account; it is Auth's API-key store.
	Apps *apps.Service
	// Store is the database (SQLite in the data directory by default),
	// migrated at Open and closed by Close.
	Store *store.DB
	// Supervisor runs the background services (store pruning, the
	// authentication-failure log, the scheduler): restarted when they fail,
	// shown in /readyz, stopped by Close in reverse start order.
	Supervisor *supervise.Supervisor
	// Scheduler runs the scheduled jobs (config and admin API), as the
	// supervised service "scheduler".
	Scheduler *schedule.Scheduler
	// Leases, when set before Open, decide which node runs a scheduled
	// job's tick (a cluster's shared implementation); default: one node's
	// memory.
	Leases schedule.Leases
	// Proxy forwards routed methods and namespace events to backends
	// (config section proxy); its configuration is replaced by Reload.
	Proxy *proxy.Proxy
	// ConfigSource, when set, reads the configuration again for Reload
	// (runServe sets it to loadConfig with the command's flags and
	// environment; tests set their own).
	ConfigSource func() (*Config, error)
	// StoreOptions tune the store (tests shorten retention); zero values
	// select the store's defaults.
	StoreOptions store.Options

	// AuthLogInterval is how often failed authentications are summed up
	// in one log line (default a minute; tests shorten it).
	AuthLogInterval time.Duration

	// ConfigureHub, when set, runs after the hub is built and before it
	// starts: tests and embedders register extra methods with it.
	ConfigureHub func(*hub.Hub)
	// Now, when set before Open, is the clock of access tokens and of the
	// hub (token expiry, the in-band refresh): tests move it instead of
	// waiting for tokens to expire. Default time.Now.
	Now func() time.Time

	stdout, stderr io.Writer
	services       []Service // added before Open
	started        []Service // started successfully, stopped in reverse
	ln             net.Listener
	srv            *http.Server
	front          *web.Front
	pprofSrv       *http.Server
	unlock         func() error // releases the data directory's lock; set by Open
	serveErr       chan error
	closeOnce      sync.Once
	closeErr       error

	nonces auth.SharedNonces // the cluster's login nonces (its broker); nil on one node

	reloadMu sync.Mutex // serialises Reload; leaf
	running  Config     // guarded by reloadMu: the configuration as last applied, for Reload's diff
}

// NewMain returns an unopened server for cfg (defaults already applied).
func NewMain(cfg *Config, stdout, stderr io.Writer) *Main {
	return &Main{Config: cfg, stdout: stdout, stderr: stderr, serveErr: make(chan error, 1)}
}

// AddService registers a boot service; call before Open.
func (m *Main) AddService(s Service) { m.services = append(m.services, s) }

// Open builds every component, listens, serves and starts boot services.
// The order keeps a refused start from leaving anything behind: first the
// listener (a busy port fails before any key or database is created), then
// the data directory's lock (a second server on the same directory is
// refused), then the keys and the database. On error everything opened so
// far is closed.
func (m *Main) Open(ctx context.Context) (err error) {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = newLogger(m.stderr, cfg.LogLevel, cfg.LogFormat)
	}
	defer func() {
		if err != nil {
			m.abortOpen()
		}
	}()

	// No TCP keep-alive probes: WebSockets have the hub's heartbeat and
	// HTTP connections their idle timeout, and turning probes on costs
	// three setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	if m.ln, err = lc.Listen(ctx, "tcp", cfg.Addr); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen on %s: the address is in use (another junction, or another program?); stop it or choose another --addr: %w", cfg.Addr, err)
		}
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if m.unlock, err = lockDataDir(cfg.Data); err != nil {
		return err
	}
	tc := tokenConfig(cfg)
	tc.Now = m.Now
	tokens, created, err := auth.LoadTokens(cfg.Data, tc)
	if err != nil {
		return err
	}
	if created {
		m.Logger.Info("generated a new signing key", "dir", cfg.Data)
	}
	m.Tokens = tokens
	m.Auth = &auth.Authenticator{Tokens: tokens, Now: m.Now}
	pepper, err := loadPepper(cfg)
	if err != nil {
		return err
	}

	var proxies []netip.Prefix
	for _, p := range cfg.Web.TrustedProxies {
		proxies = append(proxies, netip.MustParsePrefix(p)) // validated by loadConfig
	}
	m.Network = auth.NewNetworkPolicy(cfg.Web.Lockdown, proxies)
	// Lockdown turned on at run time stays on across restarts (the data
	// directory records it); web.lockdown turns it on at every start.
	if err := m.Network.PersistLockdown(cfg.Data); err != nil {
		return err
	}
	// Same-origin trusts the configured public hosts and the listen
	// address's host (a name there is how clients reach this server).
	hosts := cfg.Web.PublicHosts
	if h, _, err := net.SplitHostPort(cfg.Addr); err == nil && h != "" && auth.CheckHostName(h) == nil {
		hosts = append(slices.Clip(hosts), h)
	}
	origins, err := auth.NewOriginPolicy(cfg.Web.AllowedOrigins, hosts...)
	if err != nil {
		return fmt.Errorf("web.allowed_origins or web.public_hosts: %w", err)
	}

	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if m.Store, err = openStore(ctx, cfg, cfg.Store.options(m.StoreOptions), m.Logger); err != nil {
		return err
	}
	if cfg.Hub.NodeID == "" {
		cfg.Hub.NodeID = hub.NewNodeID()
	}
	ready := []web.ReadyCheck{{Name: "store", Parts: []web.ReadyPart{{Name: "database", Check: m.Store.Ping}}}}
	brokerKind := "memory"
	var userConns hub.UserConns // a cluster's per-user connection counts
	var rates web.SharedRates   // a cluster's per-user REST rate
	if urls, _ := cfg.brokerURLs(); len(urls) > 0 {
		// A cluster: every concern, idempotency records included, on the
		// Redis broker (the hub runs and closes it), so that all nodes
		// share them.
		rb, err := cluster.New(cluster.Config{URLs: urls, NodeID: cfg.Hub.NodeID, Logger: m.Logger,
			RouteCacheTTL: cfg.BrokerRouteCacheTTL})
		if err != nil {
			return err
		}
		if err := rb.Register(m.Registry); err != nil {
			return err
		}
		m.Broker = rb.Broker()
		if m.Leases == nil {
			m.Leases = rb // a scheduled job's tick runs on one node of the cluster
		}
		ready = append(ready, brokerReady(rb))
		m.nonces = rb // login nonces answered on any node, once
		userConns, rates = rb, rb
		brokerKind = "redis (1 shard)"
		if len(urls) > 1 {
			brokerKind = fmt.Sprintf("redis (%d shards)", len(urls))
		}
	} else {
		// One node: the in-memory broker (the hub runs and closes it), with
		// the idempotency records in the store so that they survive a
		// restart.
		m.Broker = hub.NewMemoryBroker(cfg.Hub.NodeID).Broker()
		m.Broker.Records = m.Store
	}
	hubCfg := cfg.Hub
	hubCfg.IoT = cfg.IoT
	m.Hub, err = hub.New(hubCfg, hub.Deps{Logger: m.Logger, Registerer: m.Registry, Authenticator: m.Auth,
		DeviceSeen: deviceSeen(m.Store), Broker: m.Broker, Now: m.Now, UserConns: userConns})
	if err != nil {
		_ = m.Broker.Close() // the hub did not take it over
		return err
	}
	// Tokens of revoked devices and logins are refused at the upgrade, on
	// REST and on the in-band auth.refresh.
	m.Auth.Revocations = m.Store
	m.Account, err = account.New(account.Config{AccessTTL: cfg.Auth.AccessTTL, RefreshTTL: cfg.Auth.RefreshTTL,
		Challenges: cfg.Auth.Challenges, Voice: cfg.Voice},
		account.Deps{Store: m.Store, Hub: m.Hub, Tokens: m.Tokens, Logger: m.Logger, Now: m.Now, Nonces: m.nonces})
	if err != nil {
		return err
	}
	// The data methods, the owner lookups (device, session, machine,
	// artifact) and the session snapshot provider; then the hub's own
	// retained provider.
	m.Account.Register(m.Hub)
	// The apps platform: its methods, and the API keys it stores, accepted
	// at the upgrade and on REST (an app key acting for a user with the
	// Junction-User header gets the scopes the user granted).
	// Webhook secrets are sealed at rest with a key of the data directory.
	sealKey, _, err := auth.LoadOrCreateWebhookKey(cfg.Data)
	if err != nil {
		return err
	}
	appsCfg := cfg.Apps
	if appsCfg.PublicURL == "" {
		appsCfg.PublicURL = "ws://" + m.ln.Addr().String() + "/ws"
	}
	m.Apps, err = apps.New(appsCfg, apps.Deps{Store: m.Store, Hub: m.Hub, Account: m.Account, Pepper: pepper, Logger: m.Logger, Now: m.Now,
		SealKey: sealKey, Registerer: m.Registry, Solo: brokerKind == "memory"})
	if err != nil {
		return err
	}
	m.Apps.Register(m.Hub)
	m.Auth.APIKeys, m.Auth.APIKeyPepper, m.Auth.Installs = m.Apps, pepper, m.Apps
	m.Hub.RegisterSnapshot(hub.SnapshotRetained, hub.RetainedSnapshot(m.Hub))
	if m.ConfigureHub != nil {
		m.ConfigureHub(m.Hub)
	}
	// The proxy sees the whole method table (no route may cover a method
	// of it), so it is compiled after every Register.
	m.Proxy = proxy.New(proxy.Options{Registerer: m.Registry, Logger: m.Logger, NodeID: cfg.Hub.NodeID})
	plan, err := m.Proxy.Compile(cfg.Proxy, m.Hub.Methods)
	if err != nil {
		return err
	}
	m.Proxy.Install(plan)
	m.Hub.SetInterceptor(m.Proxy)
	m.running = *cfg
	m.Supervisor = supervise.New(cfg.Services, m.Logger, m.Registry)
	m.Scheduler, err = schedule.New(cfg.Schedule, schedule.Deps{Hub: m.Hub, Store: m.Store, Leases: m.Leases, Backends: m.Proxy,
		Logger: m.Logger, Registerer: m.Registry})
	if err != nil {
		return err
	}
	m.Web, err = web.New(cfg.Web, web.Deps{
		Hub: m.Hub, Authenticator: m.Auth, Network: m.Network, Origins: origins,
		Logger: m.Logger, Registerer: m.Registry, Gatherer: m.Registry,
		Account:      m.Account,
		Apps:         m.Apps.Ops(),
		Upgrade:      m.Apps,
		Schedule:     m.Scheduler,
		Proxied:      m.Proxy.Routes,
		Ready:        ready,
		Rates:        rates,
		ReadyDetails: []web.ReadyDetail{{Name: "services", Detail: func() any { return m.Supervisor.Status() }}},
	})
	if err != nil {
		return err
	}
	if err := m.Hub.Start(); err != nil {
		return err
	}
	if err := m.Web.SyncLockdown(ctx); err != nil {
		m.Logger.Warn("cannot read the cluster's lockdown state", "err", err)
	}
	if err := m.startServices(); err != nil {
		return err
	}
	m.Apps.Start()
	m.srv = &http.Server{
		Handler:           m.Web,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug),
	}
	m.front = web.NewFront(m.Web, m.srv, m.Logger)
	go func() {
		if err := m.front.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.serveErr <- err
		}
	}()
	if cfg.PprofAddr != "" {
		if err := m.servePprof(cfg.PprofAddr); err != nil {
			m.Logger.Error("pprof listener failed; continuing without it", "addr", cfg.PprofAddr, "err", err)
		}
	}
	for _, s := range m.services {
		if err := s.Start(ctx); err != nil {
			m.Logger.Error("boot service failed to start", "service", s.Name(), "err", err)
			continue
		}
		m.started = append(m.started, s)
	}
	m.Logger.Info("listening", "addr", m.ln.Addr().String(), "node", m.Hub.NodeID(), "transport", m.Hub.Config().Transport,
		"store", m.Store.Dialect(), "database", databaseLocation(cfg), "broker", brokerKind, "data", cfg.Data)
	return nil
}

// startServices starts the background services under the supervisor, in
// the order Close stops them in reverse.
func (m *Main) startServices() error {
	every := m.AuthLogInterval
	if every <= 0 {
		every = defaultAuthLogInterval
	}
	for _, s := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"store.prune", func(ctx context.Context) error {
			m.Store.PruneEvery(ctx, store.PruneInterval, m.Logger)
			return nil
		}},
		{"auth.failure_log", func(ctx context.Context) error {
			m.logAuthFailures(ctx, every)
			return nil
		}},
		{"config.watch", m.watchConfig},
		// Apps' webhooks (session.start, session.stop).
		{"apps.webhooks", m.Apps.Run},
		// Last: stopped first, before the hub it publishes to.
		{"scheduler", m.Scheduler.Run},
	} {
		if err := m.Supervisor.Go(s.name, s.run); err != nil {
			return err
		}
	}
	return nil
}

// abortOpen releases what a failed Open had opened: the services, the hub
// (its Close also closes the broker), the store, the lock and the listener.
func (m *Main) abortOpen() {
	if m.Supervisor != nil {
		_ = m.Supervisor.Stop(context.Background())
	}
	if m.Hub != nil {
		_ = m.Hub.Close()
	}
	if m.Store != nil {
		_ = m.Store.Close()
	}
	if m.unlock != nil {
		_ = m.unlock()
		m.unlock = nil
	}
	if m.ln != nil {
		_ = m.ln.Close()
	}
}

// servePprof serves net/http/pprof on its own loopback listener, closed
// with the server.
func (m *Main) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.pprofSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.pprofSrv.Serve(ln) }()
	m.Logger.Info("serving pprof", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// URL returns the server's base URL.
func (m *Main) URL() string { return "http://" + m.ln.Addr().String() }

// WSURL returns the base URL for WebSockets (append /ws).
func (m *Main) WSURL() string { return "ws://" + m.ln.Addr().String() }

// Addr returns the listening address.
func (m *Main) Addr() net.Addr { return m.ln.Addr() }

// ServeErr reports a failure of the HTTP server.
func (m *Main) ServeErr() <-chan error { return m.serveErr }

// Close shuts down gracefully: stop accepting, drain the hub (server.shutdown,
// in-flight requests answered, 1012), stop services, release everything.
// Safe to call twice.
func (m *Main) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.front != nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.front.Shutdown(sctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
			cancel()
		}
		if m.pprofSrv != nil {
			_ = m.pprofSrv.Close()
		}
		// The background services stop before the hub and the store they
		// use, in reverse start order.
		if m.Supervisor != nil {
			if err := m.Supervisor.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if m.Apps != nil {
			m.Apps.Close()
		}
		if m.Hub != nil {
			if err := m.Hub.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if m.Store != nil {
			if err := m.Store.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if m.Proxy != nil {
			m.Proxy.Close()
		}
		for i := len(m.started) - 1; i >= 0; i-- {
			s := m.started[i]
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := s.Stop(sctx); err != nil {
				m.Logger.Error("boot service failed to stop", "service", s.Name(), "err", err)
			}
			cancel()
		}
		if m.unlock != nil {
			if err := m.unlock(); err != nil {
				errs = append(errs, fmt.Errorf("release the data directory's lock: %w", err))
			}
		}
		m.closeErr = errors.Join(errs...)
		if m.Logger != nil && m.ln != nil {
			if m.closeErr != nil {
				m.Logger.Error("stopped", "err", m.closeErr)
			} else {
				m.Logger.Info("stopped")
			}
		}
	})
	return m.closeErr
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// loadPepper returns the pepper of API keys: auth.api_key_pepper_file, else
// DATA/apikey-pepper.key, created at first start.
func loadPepper(cfg *Config) ([]byte, error) {
	if f := cfg.Auth.APIKeyPepperFile; f != "" {
		p, err := auth.ReadPepperFile(f)
		if err != nil {
			return nil, fmt.Errorf("auth.api_key_pepper_file: %w", err)
		}
		return p, nil
	}
	p, _, err := auth.LoadOrCreatePepper(cfg.Data)
	return p, err
}
