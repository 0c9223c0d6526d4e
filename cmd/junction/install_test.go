package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// The README's Install section, checked against the real binary and the
// files it names: the version stamped with -ldflags -X, the health command
// the container image runs, and the Go version that go.mod, the
// Containerfile and the README must agree on.

// buildStamped builds junction with main.version set to version, the way
// the README's release build does.
func buildStamped(t *testing.T, version string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the binary tests stop the server with SIGTERM, which Windows does not have")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build the binary with: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "junction")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-X main.version="+version, "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBin runs the binary with args and env and returns its exit code and
// output.
func runBin(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// TestBinaryVersionStamped builds junction with -ldflags "-X
// main.version=...", CGO_ENABLED=0 as the image does, and wants that
// version from --version, "version" and GET /api/v1/info of the running
// binary; "junction health" (the image's HEALTHCHECK) exits 0 while the
// server runs, finding it through --url or JUNCTION_ADDR with an
// unspecified host, and 1 after it stopped.
func TestBinaryVersionStamped(t *testing.T) {
	const version = "v9.8.7-stamped"
	bin := buildStamped(t, version)
	env := binaryEnv()
	for _, arg := range []string{"--version", "version"} {
		code, out, errOut := runBin(t, bin, env, arg)
		if code != 0 || out != "junction "+version+"\n" {
			t.Errorf("junction %s: exit %d, stdout %q, stderr %q; want 0 and %q", arg, code, out, errOut, "junction "+version+"\n")
		}
	}

	s, _ := startBinary(t, bin)
	resp, err := http.Get(s.url + "/api/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Version string `json:"version"`
	}
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil || info.Version != version {
		t.Errorf("GET /api/v1/info: version %q (%v), want %q", info.Version, err, version)
	}
	if !strings.Contains(s.stdout.String(), "Junction "+version+" listening on") {
		t.Errorf("start-up line without the version %s:\n%s", version, s.stdout)
	}

	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runBin(t, bin, env, "health", "--url", s.url+"/healthz"); code != 0 || out != "ok\n" {
		t.Errorf("junction health --url: exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errOut)
	}
	withAddr := append(append([]string{}, env...), "JUNCTION_ADDR=0.0.0.0:"+u.Port())
	if code, out, errOut := runBin(t, bin, withAddr, "health"); code != 0 || out != "ok\n" {
		t.Errorf("junction health with JUNCTION_ADDR=0.0.0.0:%s: exit %d, stdout %q, stderr %q; want 0 and ok", u.Port(), code, out, errOut)
	}
	if code, _, errOut := runBin(t, bin, env, "health", "--url", s.url+"/api/v1/no-such-endpoint"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("junction health on a 404: exit %d, stderr %q; want 1 naming the status", code, errOut)
	}

	s.term(t)
	if code, _, errOut := runBin(t, bin, env, "health", "--url", s.url+"/healthz"); code != 1 || !strings.HasPrefix(errOut, "junction: health: ") {
		t.Errorf("junction health after the server stopped: exit %d, stderr %q; want 1 and one error line", code, errOut)
	}
}

// TestHealthAddr: the address the health command derives from the server's
// listen address.
func TestHealthAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":               "127.0.0.1:7700",
		"0.0.0.0:7700":   "127.0.0.1:7700",
		"[::]:8080":      "127.0.0.1:8080",
		":9000":          "127.0.0.1:9000",
		"127.0.0.1:7701": "127.0.0.1:7701",
		"10.1.2.3:7700":  "10.1.2.3:7700",
		"[::1]:7700":     "[::1]:7700",
	} {
		if got := healthAddr(in); got != want {
			t.Errorf("healthAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// readRepoFile reads a file at the repository root.
func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInstallFilesAgree: go.mod's go line is the Go version the
// Containerfile builds with and the one the README asks for, and the
// README's Install section names the files and commands that exist.
func TestInstallFilesAgree(t *testing.T) {
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	goVersion := m[1]

	cf := readRepoFile(t, "Containerfile")
	if c := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(cf); c == nil || c[1] != goVersion {
		t.Errorf("Containerfile ARG GO_VERSION = %v, want go.mod's %s", c, goVersion)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-X main.version=", "FROM scratch", "USER 10001", "VOLUME /data", `HEALTHCHECK`, `"/junction", "health"`} {
		if !strings.Contains(cf, want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}

	readme := readRepoFile(t, "README.md")
	_, install, ok := strings.Cut(readme, "\n## Install\n")
	if !ok {
		t.Fatal("README has no ## Install section")
	}
	install, _, _ = strings.Cut(install, "\n## ")
	for _, want := range []string{
		"Go " + goVersion,
		"go install github.com/junctionhq/junction/cmd/junction@",
		"-ldflags",
		"-X main.version=",
		"CGO_ENABLED=0",
		"Containerfile",
		"docs/deploy/junction.service",
		"junction --version",
	} {
		if !strings.Contains(install, want) {
			t.Errorf("README's Install section lacks %q", want)
		}
	}
	for _, v := range regexp.MustCompile(`Go (1\.\d+(?:\.\d+)?)`).FindAllStringSubmatch(readme, -1) {
		if v[1] != goVersion {
			t.Errorf("README says Go %s, go.mod says %s", v[1], goVersion)
		}
	}
}

// TestSystemdUnitExecStart: the example unit's ExecStart runs the binary
// where the README installs it, with flags "junction serve" accepts.
func TestSystemdUnitExecStart(t *testing.T) {
	unit := readRepoFile(t, "docs/deploy/junction.service")
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("docs/deploy/junction.service has no ExecStart")
	}
	args := strings.Fields(m[1])
	if len(args) < 2 || args[0] != "/usr/local/bin/junction" || args[1] != "serve" {
		t.Fatalf("ExecStart=%s, want /usr/local/bin/junction serve ...", m[1])
	}
	cfg, err := loadConfig("serve", args[2:], nil, io.Discard)
	if err != nil {
		t.Fatalf("ExecStart's flags: %v", err)
	}
	if cfg.Data != "/var/lib/junction" || !strings.Contains(unit, "StateDirectory=junction") {
		t.Errorf("the unit's data directory %q is not its StateDirectory /var/lib/junction", cfg.Data)
	}
}

// TestModuleVersion: a stamped version wins; else "go install ...@vX.Y.Z"'s
// module version; else the development version.
func TestModuleVersion(t *testing.T) {
	info := func(v string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Main: debug.Module{Version: v}}, true }
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		stamped string
		read    func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"v1.2.3", info("v9.9.9"), "v1.2.3"},
		{devVersion, info("v1.4.0"), "v1.4.0"},
		{devVersion, info("(devel)"), devVersion},
		{devVersion, info(""), devVersion},
		{devVersion, none, devVersion},
	} {
		if got := moduleVersion(c.stamped, c.read); got != c.want {
			t.Errorf("moduleVersion(%q) = %q, want %q", c.stamped, got, c.want)
		}
	}
}
