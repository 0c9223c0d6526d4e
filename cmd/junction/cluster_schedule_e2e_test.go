package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisScheduleOncePerTick: two nodes on one redis-server with the same
// job ticking every second. The tick's lease is in Redis, so each tick runs
// on exactly one node: the two nodes' run histories hold no tick twice, and
// the publications the runs made have the offsets 1..N of the shared
// stream, each once (with one node's memory leases each tick would run on
// both nodes, twice).
func TestRedisScheduleOncePerTick(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	cfg := func(c *Config) {
		c.Broker = rs.URL()
		c.Schedule.Jobs = []schedule.JobConfig{{Name: "tick", Cron: "* * * * * *",
			Publish: &schedule.PublishConfig{Topic: "public:tick", Data: map[string]any{"tick": true}}}}
	}
	nodes := []*Main{startServer(t, cfg), startServer(t, cfg)}
	admins := []string{mintToken(t, nodes[0], "ops", "c1", "browser", "admin"),
		mintToken(t, nodes[1], "ops", "c2", "browser", "admin")}

	runs := func() (ticks map[time.Time]string, offsets []int64, perNode map[string]int) {
		ticks, perNode = map[time.Time]string{}, map[string]int{}
		for i, m := range nodes {
			var list protocol.ScheduleRunList
			apiJSON(t, m, admins[i], "GET", "/api/v1/admin/schedules/tick/runs?limit=100", nil, 200, &list)
			for _, r := range list.Items {
				if r.Trigger != "schedule" {
					continue
				}
				if !r.OK {
					t.Fatalf("run %+v failed", r)
				}
				if other, dup := ticks[r.Tick]; dup {
					t.Fatalf("tick %v ran on %s and on %s", r.Tick, other, r.Node)
				}
				ticks[r.Tick] = r.Node
				perNode[r.Node]++
				var pos protocol.StreamPosition
				if err := json.Unmarshal(r.Result, &pos); err != nil {
					t.Fatalf("run result %s: %v", r.Result, err)
				}
				offsets = append(offsets, int64(pos.Offset))
			}
		}
		slices.Sort(offsets)
		return ticks, offsets, perNode
	}
	eventuallyLong(t, "four ticks run", func() bool {
		ticks, _, _ := runs()
		return len(ticks) >= 4
	})
	ticks, offsets, perNode := runs()
	for i, o := range offsets {
		if o != int64(i+1) {
			t.Fatalf("publication offsets of the runs %v, want 1..%d each once", offsets, len(offsets))
		}
	}
	t.Logf("%d ticks, runs per node %v", len(ticks), perNode)
}
