package main

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// reloadable are the settings a reload applies while the server runs; every
// other setting keeps its running value until a restart (Reload logs the
// ones that changed). Lists of objects are named by their path.
var reloadable = []string{"proxy.backends", "proxy.methods", "proxy.namespaces", "proxy.connect", "hub.namespaces",
	"hub.max_connections", "hub.max_connections_per_user", "hub.requests_per_second", "hub.request_burst"}

// Reload reads the configuration again (ConfigSource) and applies its
// reloadable settings, without closing a connection: the backend proxy
// (backends and their limits, method routes, namespace hooks, the connect
// hook), the channel namespaces (rules, history, presence, snapshot) and
// the hub's connection and request limits.
// A configuration that does not load or validate, or whose proxy or
// namespaces do not compile, is refused whole: the running one stays and
// the error is logged and returned. SIGHUP and a change of the file
// (watchConfig) call it.
func (m *Main) Reload() error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.ConfigSource == nil {
		err := errors.New("no configuration source to reload from")
		m.Logger.Error("config reload refused; the running configuration stays", "err", err)
		return err
	}
	next, err := m.ConfigSource()
	if err == nil {
		err = m.applyLocked(next)
	}
	if err != nil {
		m.Logger.Error("config reload refused; the running configuration stays", "err", err)
		return err
	}
	return nil
}

// applyLocked applies next's reloadable settings: everything that can fail
// is checked before anything changes.
func (m *Main) applyLocked(next *Config) error {
	plan, err := m.Proxy.Compile(next.Proxy, m.Hub.Methods)
	if err != nil {
		return err
	}
	if err := m.Hub.ReloadNamespaces(next.Hub.Namespaces); err != nil {
		return err
	}
	m.Proxy.Install(plan)
	m.Hub.SetLimits(hubLimits(next.Hub))
	if next.Hub.NodeID == "" {
		next.Hub.NodeID = m.running.Hub.NodeID // generated at Open
	}
	if fixed := fixedChanges(&m.running, next); len(fixed) > 0 {
		m.Logger.Warn("config reloaded, but these settings are not reloadable and keep their running values until a restart", "settings", fixed)
	}
	prev := m.running
	m.running.Proxy, m.running.Hub.Namespaces = next.Proxy, next.Hub.Namespaces
	m.running.Hub.MaxConnections, m.running.Hub.MaxConnectionsPerUser = next.Hub.MaxConnections, next.Hub.MaxConnectionsPerUser
	m.running.Hub.RequestsPerSecond, m.running.Hub.RequestBurst = next.Hub.RequestsPerSecond, next.Hub.RequestBurst
	m.Logger.Info("config reloaded", "backends", len(next.Proxy.Backends), "method_routes", len(next.Proxy.Methods),
		"namespace_hooks", len(next.Proxy.Namespaces), "namespaces", len(next.Hub.Namespaces),
		"proxy_changed", !reflect.DeepEqual(prev.Proxy, next.Proxy), "namespaces_changed", !reflect.DeepEqual(prev.Hub.Namespaces, next.Hub.Namespaces))
	return nil
}

// hubLimits returns the reloadable limits of c.
func hubLimits(c hub.Config) hub.Limits {
	return hub.Limits{MaxConnections: c.MaxConnections, MaxConnectionsPerUser: c.MaxConnectionsPerUser,
		RequestsPerSecond: c.RequestsPerSecond, RequestBurst: c.RequestBurst}
}

// fixedChanges lists the settings that differ between running and next and
// that a reload does not apply.
func fixedChanges(running, next *Config) []string {
	var out []string
	for _, s := range settings() {
		if slices.Contains(reloadable, s.path) {
			continue
		}
		if !reflect.DeepEqual(field(running, s.path).Interface(), field(next, s.path).Interface()) {
			out = append(out, s.path)
		}
	}
	if !reflect.DeepEqual(running.Schedule.Jobs, next.Schedule.Jobs) {
		out = append(out, "schedule.jobs")
	}
	return out
}

// watchConfig reloads when the configuration file's modification time or
// size changed and then stayed the same for one more check, every
// Config.ConfigPoll (the supervised service "config.watch"): a file caught
// while an editor rewrites it (empty, or half written, yet perhaps valid) is
// not applied. Without a file, or with a negative interval, it only waits
// for ctx.
func (m *Main) watchConfig(ctx context.Context) error {
	file, every := m.Config.file, m.Config.ConfigPoll
	if file == "" || every < 0 || m.ConfigSource == nil {
		<-ctx.Done()
		return nil
	}
	stamp := func() (time.Time, int64) {
		st, err := os.Stat(file)
		if err != nil {
			return time.Time{}, -1
		}
		return st.ModTime(), st.Size()
	}
	appliedMod, appliedSize := stamp() // what the running configuration was read from
	seenMod, seenSize := appliedMod, appliedSize
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		mod, size := stamp()
		changing := !mod.Equal(seenMod) || size != seenSize
		seenMod, seenSize = mod, size
		if changing || (mod.Equal(appliedMod) && size == appliedSize) {
			continue // still being written, or nothing new
		}
		appliedMod, appliedSize = mod, size
		if size < 0 {
			m.Logger.Warn("config file unreadable; the running configuration stays", "file", file)
			continue
		}
		m.Logger.Info("config file changed: reloading", "file", file)
		_ = m.Reload() // logged
	}
}
