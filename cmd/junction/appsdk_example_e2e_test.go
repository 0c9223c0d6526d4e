package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The quick start of docs/apps.md, as a developer runs it: the shipped
// junction binary, `junction app create`, the example app backend
// (examples/captions) and the simulated device (examples/glasses), each a
// process of its own built by the test.

// buildExample builds the example program in examples/name.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build the example with: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command(gobin, "build", "-o", bin, filepath.Join("..", "..", "examples", name)).CombinedOutput()
	if err != nil {
		t.Fatalf("go build examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// proc is a running example program.
type proc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer // stdout and stderr
	exited chan error
}

func startProc(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// wait waits until the program's output matches re and returns the match.
func (p *proc) wait(t *testing.T, what, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	deadline := time.Now().Add(30 * time.Second)
	for m == nil {
		select {
		case err := <-p.exited:
			t.Fatalf("%s: the program exited (%v) before %q\noutput:\n%s", what, err, re, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in the output:\n%s", what, re, p.out)
		}
		m = rx.FindStringSubmatch(p.out.String())
		if m == nil {
			time.Sleep(20 * time.Millisecond) // polling the output, not ordering anything
		}
	}
	return m
}

// signal sends sig and waits for a clean exit.
func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after %v: %v\noutput:\n%s", sig, err, p.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after %v\noutput:\n%s", sig, p.out)
	}
}

// TestAppSDKExample follows the quick start: register the app with the
// CLI, run the example backend with the printed key and secret, run the
// simulated device (declare main, install, start): the backend gets
// session.start, connects, logs its hello and subscribes to the
// transcript stream; the device publishes its script of phrases and prints
// each caption the backend shows on main (output.show), then the clear
// when the last one's TTL ends; the backend restarts and reattaches its
// session with its subscription kept; Ctrl-C on the device stops it, and
// the backend logs session.stop.
func TestAppSDKExample(t *testing.T) {
	bin := buildJunction(t)
	captions := buildExample(t, "captions")
	glasses := buildExample(t, "glasses")
	s, data := startBinary(t, bin)

	// A free port for the backend, whose URL the registration needs first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := ln.Addr().String()
	ln.Close()

	out, err := exec.Command(bin, "app", "create", "--data", data, "--url", s.url, "--id", "com.example.captions", "--name", "Live captions",
		"--webhook", "http://"+backend+"/junction", "--internal", "--scopes", "read,write,stream:transcript,output", "--capabilities", "display").CombinedOutput()
	if err != nil {
		t.Fatalf("junction app create: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`(?m)^jk_\S+$`).FindString(string(out))
	secret := regexp.MustCompile(`(?m)^whsec_\S+$`).FindString(string(out))
	if key == "" || secret == "" {
		t.Fatalf("junction app create printed no key or secret:\n%s", out)
	}

	env := append(binaryEnv(), "APP_API_KEY="+key, "APP_WEBHOOK_SECRET="+secret)
	resume := filepath.Join(t.TempDir(), "resume")
	args := []string{"--addr", backend, "--junction", s.url, "--resume-dir", resume, "--ttl", "1s"}
	app := startProc(t, env, captions, args...)
	app.wait(t, "backend", `listening on http://`+regexp.QuoteMeta(backend)+`/junction`)

	tok, err := exec.Command(bin, "token", "--data", data, "--user", "alice", "--device", "glasses-1", "--kind", "glasses", "--scope", "read,write,output").Output()
	if err != nil {
		t.Fatalf("junction token: %v", err)
	}
	ws := "ws" + strings.TrimPrefix(s.url, "http") + "/ws"
	dev := startProc(t, binaryEnv(), glasses, "--url", ws, "--token", strings.TrimSpace(string(tok)), "--app", "com.example.captions", "--every", "200ms")
	dev.wait(t, "device", `declared surface main`)
	id := dev.wait(t, "device", `started session (\S+) \(starting\)`)[1]
	dev.wait(t, "device", `app.session `+id+` running`)
	app.wait(t, "backend", `captions: session running" session=`+id+` user=pu_\S+ scopes="\[read stream:transcript output\]" capabilities="\[display microphone\]" device=glasses online=true priority=foreground`)
	app.wait(t, "backend", `captions: subscribed" session=`+id+` streams=\[transcript\] rejected=\[\]`)

	// Captions on the simulated device: every phrase of its script comes
	// back through the app as output.show on main; the last one is cleared
	// when its TTL (1s) ends.
	first := `Hello, this is a live caption test.`
	last := `Each caption hides itself when its time is up.`
	dev.wait(t, "device", `heard "`+regexp.QuoteMeta(first)+`" \(transcript #1, delivered to 1\)`)
	app.wait(t, "backend", `captions: caption" session=`+id+` request=\S+ text="`+regexp.QuoteMeta(first)+`"`)
	dev.wait(t, "device", `output.show main: `+regexp.QuoteMeta(first))
	dev.wait(t, "device", `script done`)
	dev.wait(t, "device", `(?s)output.show main: `+regexp.QuoteMeta(last)+`\n.*output.clear main\n`)
	app.wait(t, "backend", `captions: caption done" session=`+id+` request=\S+ outcome=shown last=hidden reason=expired`)

	// The backend restarts: the session waits, then is reattached.
	app.signal(t, syscall.SIGTERM)
	dev.wait(t, "device", `app.session `+id+` transport_down`)
	app = startProc(t, env, captions, args...)
	app.wait(t, "restarted backend", `reattached sessions" count=1`)
	app.wait(t, "restarted backend", `captions: session running" session=`+id)
	app.wait(t, "restarted backend", `captions: subscribed" session=`+id+` streams=\[transcript\] kept=true`)
	eventually(t, "the device sees the session running again", func() bool {
		return strings.Count(dev.out.String(), "app.session "+id+" running") >= 2
	})

	// Ctrl-C on the device stops the session.
	dev.signal(t, os.Interrupt)
	if !strings.Contains(dev.out.String(), "stopped session "+id+": user_stopped") {
		t.Fatalf("device output:\n%s", dev.out)
	}
	app.wait(t, "backend", `captions: session.stop" session=`+id+` reason=user_stopped`)
	app.wait(t, "backend", `captions: session over" session=`+id+` why="appsdk: session stopped: user_stopped"`)
	app.signal(t, syscall.SIGTERM)
	if entries, err := os.ReadDir(resume); err != nil || len(entries) != 0 {
		t.Fatalf("resume store after the stop: %v, %v; want empty", entries, err)
	}
	s.term(t)
}
