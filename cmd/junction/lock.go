package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// lockFileName is the file in the data directory that a running server
// holds locked, so that a second server on the same directory is refused
// (two would share the signing key and SQLite file and each prune and
// migrate behind the other's back).
const lockFileName = "junction.lock"

// errDataDirBusy is the refusal when another process holds the lock.
var errDataDirBusy = errors.New("data directory in use")

// lockDataDir takes the data directory's lock, writes this process's id
// into the lock file and returns the function that releases it. The lock
// is the operating system's (flock on Linux, macOS and the BSDs, LockFileEx
// on Windows): it is released when the process exits, however it exits, so
// a stale lock file from a crash does not block the next start.
func lockDataDir(dir string) (release func() error, err error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		defer f.Close()
		if errors.Is(err, errDataDirBusy) {
			holder := "another process"
			if b, _ := os.ReadFile(path); len(bytes.TrimSpace(b)) > 0 {
				holder = "process " + string(bytes.TrimSpace(b))
			}
			return nil, fmt.Errorf("%w: %s holds %s; is another junction running on --data %s? Stop it, or give this one another data directory: %w",
				errDataDirBusy, holder, path, dir, err)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Best effort: the pid helps the operator find the holder.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f.Close, nil // closing the file releases the lock
}
