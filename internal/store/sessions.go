package store

import (
	"context"
	"time"
)

// Session is an encrypted conversation with an agent. Metadata and
// AgentState are ciphertext with independent versions.
type Session struct {
	ID         string    `json:"id"`
	AccountID  string    `json:"accountId"`
	Metadata   Versioned `json:"metadata"`
	AgentState Versioned `json:"agentState"`
	// LastSeq is the seq of the session's last message (0 if none).
	LastSeq   int64     `json:"lastSeq"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func sessionOf(o object) Session {
	return Session{ID: o.ID, AccountID: o.AccountID, Metadata: o.F[0], AgentState: o.F[1], LastSeq: o.Extra,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

func sessionBody(o object) any { return sessionOf(o) }

// CreateSession creates a session for account with both fields at version
// 1, and emits session.created.
func (db *DB) CreateSession(ctx context.Context, account string, metadata, agentState []byte) (Session, []Update, error) {
	o, ups, err := db.createObject(ctx, sessionsTable, account, metadata, agentState, sessionBody)
	return sessionOf(o), ups, err
}

// Session returns one of account's sessions.
func (db *DB) Session(ctx context.Context, account, id string) (Session, error) {
	o, err := db.getObject(ctx, sessionsTable, account, id)
	return sessionOf(o), err
}

// Sessions lists account's sessions, newest first, one page at a time;
// next is the cursor of the following page, "" after the last.
func (db *DB) Sessions(ctx context.Context, account string, p Page) (sessions []Session, next string, err error) {
	os, next, err := db.listObjects(ctx, sessionsTable, account, p)
	for _, o := range os {
		sessions = append(sessions, sessionOf(o))
	}
	return sessions, next, err
}

// UpdateSessionMetadata replaces the metadata if its version is expected
// (else *ConflictError) and emits session.updated.
func (db *DB) UpdateSessionMetadata(ctx context.Context, account, id string, expected int64, value []byte) (Session, []Update, error) {
	o, ups, err := db.updateField(ctx, sessionsTable, 0, account, id, expected, value)
	return sessionOf(o), ups, err
}

// UpdateSessionAgentState replaces the agent state if its version is
// expected (else *ConflictError) and emits session.updated.
func (db *DB) UpdateSessionAgentState(ctx context.Context, account, id string, expected int64, value []byte) (Session, []Update, error) {
	o, ups, err := db.updateField(ctx, sessionsTable, 1, account, id, expected, value)
	return sessionOf(o), ups, err
}

// DeleteSession deletes a session and its messages and emits
// session.deleted.
func (db *DB) DeleteSession(ctx context.Context, account, id string) ([]Update, error) {
	return db.deleteObject(ctx, sessionsTable, account, id)
}

// Machine is an agent daemon's record. Metadata and DaemonState are
// ciphertext with independent versions.
type Machine struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"accountId"`
	Metadata    Versioned `json:"metadata"`
	DaemonState Versioned `json:"daemonState"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func machineOf(o object) Machine {
	return Machine{ID: o.ID, AccountID: o.AccountID, Metadata: o.F[0], DaemonState: o.F[1], CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

// CreateMachine creates a machine for account and emits machine.created.
func (db *DB) CreateMachine(ctx context.Context, account string, metadata, daemonState []byte) (Machine, []Update, error) {
	o, ups, err := db.createObject(ctx, machinesTable, account, metadata, daemonState, func(o object) any { return machineOf(o) })
	return machineOf(o), ups, err
}

// Machine returns one of account's machines.
func (db *DB) Machine(ctx context.Context, account, id string) (Machine, error) {
	o, err := db.getObject(ctx, machinesTable, account, id)
	return machineOf(o), err
}

// Machines lists account's machines, newest first, one page at a time.
func (db *DB) Machines(ctx context.Context, account string, p Page) (machines []Machine, next string, err error) {
	os, next, err := db.listObjects(ctx, machinesTable, account, p)
	for _, o := range os {
		machines = append(machines, machineOf(o))
	}
	return machines, next, err
}

// UpdateMachineMetadata replaces the metadata if its version is expected
// (else *ConflictError) and emits machine.updated.
func (db *DB) UpdateMachineMetadata(ctx context.Context, account, id string, expected int64, value []byte) (Machine, []Update, error) {
	o, ups, err := db.updateField(ctx, machinesTable, 0, account, id, expected, value)
	return machineOf(o), ups, err
}

// UpdateMachineDaemonState replaces the daemon state if its version is
// expected (else *ConflictError) and emits machine.updated.
func (db *DB) UpdateMachineDaemonState(ctx context.Context, account, id string, expected int64, value []byte) (Machine, []Update, error) {
	o, ups, err := db.updateField(ctx, machinesTable, 1, account, id, expected, value)
	return machineOf(o), ups, err
}

// DeleteMachine deletes a machine and emits machine.deleted.
func (db *DB) DeleteMachine(ctx context.Context, account, id string) ([]Update, error) {
	return db.deleteObject(ctx, machinesTable, account, id)
}

// Artifact is an encrypted document (a file, a plan, an image) with an
// encrypted Header (small, listed) and Body (large), versioned
// independently.
type Artifact struct {
	ID        string    `json:"id"`
	AccountID string    `json:"accountId"`
	Header    Versioned `json:"header"`
	Body      Versioned `json:"body"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func artifactOf(o object) Artifact {
	return Artifact{ID: o.ID, AccountID: o.AccountID, Header: o.F[0], Body: o.F[1], CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

// CreateArtifact creates an artifact for account and emits
// artifact.created (whose body carries header and body).
func (db *DB) CreateArtifact(ctx context.Context, account string, header, body []byte) (Artifact, []Update, error) {
	o, ups, err := db.createObject(ctx, artifactsTable, account, header, body, func(o object) any { return artifactOf(o) })
	return artifactOf(o), ups, err
}

// Artifact returns one of account's artifacts.
func (db *DB) Artifact(ctx context.Context, account, id string) (Artifact, error) {
	o, err := db.getObject(ctx, artifactsTable, account, id)
	return artifactOf(o), err
}

// Artifacts lists account's artifacts, newest first, one page at a time.
func (db *DB) Artifacts(ctx context.Context, account string, p Page) (artifacts []Artifact, next string, err error) {
	os, next, err := db.listObjects(ctx, artifactsTable, account, p)
	for _, o := range os {
		artifacts = append(artifacts, artifactOf(o))
	}
	return artifacts, next, err
}

// UpdateArtifactHeader replaces the header if its version is expected
// (else *ConflictError) and emits artifact.updated.
func (db *DB) UpdateArtifactHeader(ctx context.Context, account, id string, expected int64, value []byte) (Artifact, []Update, error) {
	o, ups, err := db.updateField(ctx, artifactsTable, 0, account, id, expected, value)
	return artifactOf(o), ups, err
}

// UpdateArtifactBody replaces the body if its version is expected (else
// *ConflictError) and emits artifact.updated.
func (db *DB) UpdateArtifactBody(ctx context.Context, account, id string, expected int64, value []byte) (Artifact, []Update, error) {
	o, ups, err := db.updateField(ctx, artifactsTable, 1, account, id, expected, value)
	return artifactOf(o), ups, err
}

// DeleteArtifact deletes an artifact and emits artifact.deleted.
func (db *DB) DeleteArtifact(ctx context.Context, account, id string) ([]Update, error) {
	return db.deleteObject(ctx, artifactsTable, account, id)
}
