package schedule_test

import (
	"testing"

	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/internal/schedule/leasetest"
)

func TestMemoryLeasesContract(t *testing.T) {
	leasetest.Run(t, func(t *testing.T) schedule.Leases { return &schedule.MemoryLeases{} })
}
