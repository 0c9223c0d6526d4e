package appsdk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Resume is what reattaching a session takes: its latest resume token and
// the WebSocket URL it was connected to.
type Resume struct {
	SessionID string `json:"sessionId"`
	Token     string `json:"token"` // jr_…: a credential; store it like one
	URL       string `json:"url"`   // the websocketUrl of the session's start; empty: Options.URL's /ws
	UserID    string `json:"userId,omitempty"`
}

// ResumeStore keeps the resume tokens of an App's sessions, so that a
// later run of the backend (or another instance sharing the store)
// reattaches them. The App saves a session's record after each hello (each
// hello supersedes the previous token) and deletes it when the session
// stops. Implementations must be safe for concurrent use.
type ResumeStore interface {
	// Save records r, replacing the session's earlier record.
	Save(ctx context.Context, r Resume) error
	// Load returns the record of session id; ok is false when there is none.
	Load(ctx context.Context, id string) (r Resume, ok bool, err error)
	// Delete removes the record of session id if its token is token: a
	// record saved since by another instance stays.
	Delete(ctx context.Context, id, token string) error
}

var (
	_ ResumeStore = (*MemoryResumeStore)(nil)
	_ ResumeStore = (*DirResumeStore)(nil)
)

// MemoryResumeStore is a ResumeStore in memory: it survives a session's
// transport losses, not the process. It holds one record per session not
// yet stopped.
type MemoryResumeStore struct {
	mu sync.Mutex        // leaf
	m  map[string]Resume // guarded by mu
}

// NewMemoryResumeStore returns an empty MemoryResumeStore.
func NewMemoryResumeStore() *MemoryResumeStore {
	return &MemoryResumeStore{m: map[string]Resume{}}
}

// Save implements ResumeStore.
func (m *MemoryResumeStore) Save(_ context.Context, r Resume) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[r.SessionID] = r
	return nil
}

// Load implements ResumeStore.
func (m *MemoryResumeStore) Load(_ context.Context, id string) (Resume, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.m[id]
	return r, ok, nil
}

// Delete implements ResumeStore.
func (m *MemoryResumeStore) Delete(_ context.Context, id, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.m[id]; ok && r.Token == token {
		delete(m.m, id)
	}
	return nil
}

// DirResumeStore is a ResumeStore in a directory, one file (mode 0600) per
// session, replaced atomically: it survives restarts of the backend on one
// machine. The tokens are credentials of the app's sessions; keep the
// directory private.
type DirResumeStore struct {
	dir string     // set once
	mu  sync.Mutex // serialises Delete's compare with Save
}

// NewDirResumeStore returns a DirResumeStore in dir, creating it (0700).
func NewDirResumeStore(dir string) (*DirResumeStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("appsdk: resume store: %w", err)
	}
	return &DirResumeStore{dir: dir}, nil
}

func (d *DirResumeStore) path(id string) string {
	// Session ids are opaque: encode them into a safe file name.
	return filepath.Join(d.dir, base64.RawURLEncoding.EncodeToString([]byte(id))+".json")
}

// Save implements ResumeStore.
func (d *DirResumeStore) Save(_ context.Context, r Resume) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.CreateTemp(d.dir, ".resume-*")
	if err != nil {
		return fmt.Errorf("appsdk: resume store: %w", err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o600)
	}
	if werr == nil {
		werr = os.Rename(f.Name(), d.path(r.SessionID))
	}
	if werr != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("appsdk: resume store: save: %w", werr)
	}
	return nil
}

// Load implements ResumeStore.
func (d *DirResumeStore) Load(_ context.Context, id string) (Resume, bool, error) {
	b, err := os.ReadFile(d.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Resume{}, false, nil
	}
	if err != nil {
		return Resume{}, false, fmt.Errorf("appsdk: resume store: load: %w", err)
	}
	var r Resume
	if err := json.Unmarshal(b, &r); err != nil {
		return Resume{}, false, fmt.Errorf("appsdk: resume store: load %s: %w", id, err)
	}
	return r, true, nil
}

// Delete implements ResumeStore.
func (d *DirResumeStore) Delete(ctx context.Context, id, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok, err := d.Load(ctx, id)
	if err != nil || !ok || r.Token != token {
		return err
	}
	if err := os.Remove(d.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("appsdk: resume store: delete: %w", err)
	}
	return nil
}
