//go:build linux

package redistest

import (
	"os"
	"syscall"
)

// procAttr runs redis-server in its own process group, killed with the test
// process.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills p's whole process group.
func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
