//go:build !linux

package pgtest

import (
	"os"
	"syscall"
)

// Elsewhere than Linux, PostgreSQL runs as the test's own user, as a plain
// child process (no process group, no kill with the test process): the
// package builds everywhere, and CI runs it on Linux.

type credential struct{}

func unprivileged() (*credential, error)            { return nil, nil }
func chownTo(string, *credential) error             { return nil }
func initdbAttr(*credential) *syscall.SysProcAttr   { return nil }
func postgresAttr(*credential) *syscall.SysProcAttr { return nil }
func killGroup(p *os.Process)                       { _ = p.Kill() }
