package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/hub/brokertest"
)

// The memory implementations pass the contract suite of every interface
// they provide.

func TestMemoryBrokerStreams(t *testing.T) {
	brokertest.Streams(t, func(t *testing.T, h hub.PublicationHandler) hub.Streams {
		b := hub.NewMemoryBroker("n1")
		if err := b.Deliver(context.Background(), h); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestMemoryBrokerPresence(t *testing.T) {
	brokertest.Presence(t, func(t *testing.T) hub.Presence {
		b := hub.NewMemoryBroker("n1")
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestMemoryBrokerDirectory(t *testing.T) {
	brokertest.Directory(t, func(t *testing.T, h hub.NodeHandler) hub.Directory {
		b := hub.NewMemoryBroker("n1")
		if err := b.Receive(context.Background(), h); err != nil {
			t.Fatalf("Receive: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestMemoryRecords(t *testing.T) {
	brokertest.Records(t, func(t *testing.T) hub.IdemRecords {
		return hub.NewMemoryRecords(1000, time.Now)
	})
}

// TestBrokerRunClose runs and closes each distinct part once: a
// MemoryBroker serving three concerns is started and closed once.
func TestBrokerRunClose(t *testing.T) {
	mb := hub.NewMemoryBroker("n1")
	b := mb.Broker()
	h := brokertest.NewHandler()
	if err := b.Run(context.Background(), h); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := mb.Start(context.Background()); err == nil {
		t.Fatal("Start after Run: got nil, want an error (Run started it once)")
	}
}
