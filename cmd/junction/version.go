package main

import "runtime/debug"

// devVersion is what a build that nobody stamped reports.
const devVersion = "0.1.0-dev"

// A release build stamps the version with -ldflags "-X main.version=vX.Y.Z";
// "go install github.com/junctionhq/junction/cmd/junction@vX.Y.Z" cannot pass
// ldflags, but records the module version in the build info, which is used
// when nothing was stamped.
func init() { version = moduleVersion(version, debug.ReadBuildInfo) }

// moduleVersion returns v when it was stamped, else the main module's
// version from the build info when there is one.
func moduleVersion(v string, read func() (*debug.BuildInfo, bool)) string {
	if v != devVersion {
		return v
	}
	if bi, ok := read(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return v
}
