package auth

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	secret, created, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatalf("first LoadOrCreateSecret: %v", err)
	}
	if !created {
		t.Fatal("first call: got created false, want true")
	}
	if len(secret) != MinSecretBytes {
		t.Fatalf("got %d bytes, want %d", len(secret), MinSecretBytes)
	}
	path := filepath.Join(dir, SecretFileName)
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(onDisk, secret) {
		t.Fatal("got a file content different from the returned secret")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("got %d entries in the data dir, want only the secret (no temp files left)", len(entries))
	}

	again, created, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatalf("second LoadOrCreateSecret: %v", err)
	}
	if created || !bytes.Equal(again, secret) {
		t.Fatalf("second call: got created %v and a different secret %v, want reuse", created, !bytes.Equal(again, secret))
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("%s: got mode %v, want %v", path, got, want)
	}
}

func TestLoadOrCreateSecretRefuses(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		dir     bool
		wantIn  string
	}{
		{"world readable", bytes.Repeat([]byte{1}, 32), 0o644, false, "mode"},
		{"group readable", bytes.Repeat([]byte{1}, 32), 0o640, false, "mode"},
		{"short", bytes.Repeat([]byte{1}, 31), 0o600, false, "31 bytes"},
		{"empty", nil, 0o600, false, "0 bytes"},
		{"directory", nil, 0o700, true, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, SecretFileName)
			if tt.dir {
				if err := os.Mkdir(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			secret, _, err := LoadOrCreateSecret(dir)
			if err == nil {
				t.Fatalf("got secret %x, want error", secret)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("got error %q, want it to mention %q", err, tt.wantIn)
			}
			if !tt.dir {
				if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.content) {
					t.Fatal("got the refused file changed, want it left alone")
				}
			}
		})
	}
}

func TestLoadOrCreateSecretLongerFileAccepted(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte{7}, 64)
	if err := os.WriteFile(filepath.Join(dir, SecretFileName), want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, created, err := LoadOrCreateSecret(dir)
	if err != nil || created || !bytes.Equal(got, want) {
		t.Fatalf("got (%x, %v, %v), want the 64-byte file unchanged", got, created, err)
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	secrets := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { secrets[i], _, errs[i] = LoadOrCreateSecret(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("call %d: got a different secret, want all equal", i)
		}
	}
}

func TestLoadOrCreatePepper(t *testing.T) {
	dir := t.TempDir()
	secret, _, err := LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	pepper, created, err := LoadOrCreatePepper(dir)
	if err != nil || !created || len(pepper) < MinPepperBytes {
		t.Fatalf("LoadOrCreatePepper first = %d bytes, created %v, %v; want >= %d bytes created", len(pepper), created, err, MinPepperBytes)
	}
	if bytes.Equal(pepper, secret) {
		t.Fatal("got the pepper equal to the signing secret, want its own random bytes")
	}
	again, created, err := LoadOrCreatePepper(dir)
	if err != nil || created || !bytes.Equal(again, pepper) {
		t.Fatalf("LoadOrCreatePepper again: created %v, %v, same %v; want the same pepper, not created", created, err, bytes.Equal(again, pepper))
	}
	read, err := ReadPepperFile(filepath.Join(dir, PepperFileName))
	if err != nil || !bytes.Equal(read, pepper) {
		t.Fatalf("ReadPepperFile = %v; want the pepper", err)
	}
	if _, err := ReadPepperFile(filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("ReadPepperFile(missing): got no error, want one (it never creates)")
	}
}
