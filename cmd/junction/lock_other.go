//go:build !unix && !windows

package main

import "os"

// lockFile does nothing where the platform has no advisory lock Junction
// knows (Plan 9, wasm): a second server on the same data directory is not
// refused there.
func lockFile(f *os.File) error { return nil }
