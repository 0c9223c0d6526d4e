package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
)

// databaseDSN returns the store's DSN: Config.Database, or the SQLite file
// junction.db in the data directory when it is empty.
func databaseDSN(cfg *Config) string {
	if cfg.Database != "" {
		return cfg.Database
	}
	return "sqlite:" + filepath.Join(cfg.Data, "junction.db")
}

// databaseLocation says where the database is, for the start-up log,
// without credentials: the SQLite file, or PostgreSQL's host, port and
// database name.
func databaseLocation(cfg *Config) string {
	dsn := databaseDSN(cfg)
	if dialect, _ := store.ParseDSN(dsn); dialect != "postgres" {
		return strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
	}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Host + u.Path
	}
	var host, port, db string
	for _, kv := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(kv, "=")
		v = strings.Trim(v, "'")
		switch k {
		case "host", "hostaddr":
			host = v
		case "port":
			port = ":" + v
		case "dbname":
			db = "/" + v
		}
	}
	return host + port + db
}

// openStore opens the configured database and applies pending migrations.
func openStore(ctx context.Context, cfg *Config, opts store.Options, log *slog.Logger) (*store.DB, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := store.Open(ctx, databaseDSN(cfg), opts)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	if len(applied) > 0 {
		log.Info("database migrated", "dialect", db.Dialect(), "applied", applied)
	}
	return db, nil
}

// deviceSeen persists the last-seen times of devices whose last connection
// closed, a batch at a time. Devices the store does not know (tokens minted
// with "junction token") are ignored.
func deviceSeen(db *store.DB) func(ctx context.Context, seen []hub.SeenDevice) error {
	return func(ctx context.Context, seen []hub.SeenDevice) error {
		batch := make([]store.SeenDevice, 0, len(seen))
		for _, d := range seen {
			if d.DeviceID != "" {
				batch = append(batch, store.SeenDevice{Account: d.UserID, ID: d.DeviceID, At: d.At})
			}
		}
		_, err := db.TouchDevices(ctx, batch)
		return err
	}
}

// runMigrate implements "junction migrate": it applies the migrations to the
// configured database (--database, or SQLite in --data) and exits.
func runMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("migrate", args, environ, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil && cfg.Database == "" {
		return fmt.Errorf("create data dir: %w", err)
	}
	db, err := store.Open(ctx, databaseDSN(cfg), cfg.Store.options(store.Options{}))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrate database: %w", err)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "%s database is up to date\n", db.Dialect())
		return nil
	}
	fmt.Fprintf(stdout, "%s database: applied migrations %v\n", db.Dialect(), applied)
	return nil
}
