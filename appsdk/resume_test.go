package appsdk

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestResumeStores: both stores keep the latest record per session, and
// Delete removes it only when the token is still the one given.
func TestResumeStores(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "resume")
	disk, err := NewDirResumeStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]ResumeStore{"memory": NewMemoryResumeStore(), "dir": disk} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			id := "as_01/../x" // opaque ids must not escape the directory
			if _, ok, err := st.Load(ctx, id); ok || err != nil {
				t.Fatalf("Load of nothing: ok %v err %v", ok, err)
			}
			if err := st.Save(ctx, Resume{SessionID: id, Token: "jr_1", URL: "ws://h/ws"}); err != nil {
				t.Fatal(err)
			}
			if err := st.Save(ctx, Resume{SessionID: id, Token: "jr_2", URL: "ws://h/ws", UserID: "pu_1"}); err != nil {
				t.Fatal(err)
			}
			r, ok, err := st.Load(ctx, id)
			if err != nil || !ok || r.Token != "jr_2" || r.URL != "ws://h/ws" || r.UserID != "pu_1" {
				t.Fatalf("Load: %+v %v %v, want the second record", r, ok, err)
			}
			if err := st.Delete(ctx, id, "jr_1"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := st.Load(ctx, id); !ok {
				t.Fatal("Delete with a superseded token removed the newer record")
			}
			if err := st.Delete(ctx, id, "jr_2"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := st.Load(ctx, id); ok {
				t.Fatal("Delete with the current token left the record")
			}
		})
	}
	// The directory store survives a new instance (a restarted backend).
	ctx := context.Background()
	if err := disk.Save(ctx, Resume{SessionID: "s9", Token: "jr_9"}); err != nil {
		t.Fatal(err)
	}
	again, err := NewDirResumeStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok, err := again.Load(ctx, "s9"); !ok || err != nil || r.Token != "jr_9" {
		t.Fatalf("after reopening: %+v %v %v", r, ok, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if len(entries) != 1 {
		t.Fatalf("%d files in the store, want 1 (temporary files removed)", len(entries))
	}
}
