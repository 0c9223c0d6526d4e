package account

import (
	"errors"
	"fmt"
	"testing"

	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

func TestMapStoreErr(t *testing.T) {
	fault := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		in   error
		want protocol.Code
	}{
		{"not found", fmt.Errorf("store: session: %w", store.ErrNotFound), protocol.CodeNotFound},
		{"conflict", fmt.Errorf("store: update: %w", &store.ConflictError{Current: 3, Value: []byte("v")}), protocol.CodeConflict},
		{"too large", fmt.Errorf("store: x: %w", store.ErrTooLarge), protocol.CodeTooLarge},
		{"invalid", store.ErrInvalid, protocol.CodeBadRequest},
		{"revoked", store.ErrRevoked, protocol.CodeForbidden},
		{"duplicate", store.ErrDuplicate, protocol.CodeConflict},
		{"protocol error passes", protocol.FieldError("x", "bad"), protocol.CodeBadRequest},
		{"fault is internal", fault, protocol.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe := protocol.AsError(mapStoreErr(tc.in))
			if pe.Code != tc.want {
				t.Fatalf("code: got %s, want %s", pe.Code, tc.want)
			}
			if tc.want == protocol.CodeInternal && pe.Message == fault.Error() {
				t.Fatal("a fault's text reached the client")
			}
		})
	}
	pe := protocol.AsError(mapStoreErr(&store.ConflictError{Current: 3, Value: []byte("v")}))
	if pe.Details["currentVersion"] != int64(3) || pe.Details["value"] != "dg==" {
		t.Fatalf("conflict details: got %v", pe.Details)
	}
}

func TestDecodeB64NamesField(t *testing.T) {
	if _, err := decodeB64("messages[2].body", "not base64!"); protocol.AsError(err).Details["field"] != "messages[2].body" {
		t.Fatalf("got %v, want a field error naming messages[2].body", err)
	}
	if b, err := decodeB64("x", "aGk="); err != nil || string(b) != "hi" {
		t.Fatalf("got %q, %v", b, err)
	}
}
