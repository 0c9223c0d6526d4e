package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchNodesFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the error; "" for success
	}{
		{"three nodes", []string{"--url", "ws://127.0.0.1:7701/ws,ws://127.0.0.1:7702/ws, ws://127.0.0.2:7703/ws"}, ""},
		{"one node not loopback", []string{"--url", "ws://127.0.0.1:7701/ws,ws://10.0.0.2:7702/ws"}, "loopback"},
		{"one node not ws", []string{"--url", "ws://127.0.0.1:7701/ws,http://127.0.0.1:7702/ws"}, "ws://"},
		{"mixed families", []string{"--url", "ws://127.0.0.1:7701/ws,ws://[::1]:7702/ws"}, "family"},
		{"server pids", []string{"--server-pid", "12,13,14"}, ""},
		{"bad server pid", []string{"--server-pid", "12,x"}, "--server-pid"},
		{"redis", []string{"--redis", "127.0.0.1:6379,localhost:6380"}, ""},
		{"redis not loopback", []string{"--redis", "127.0.0.1:6379,10.1.1.1:6379"}, "loopback"},
		{"redis without port", []string{"--redis", "127.0.0.1"}, "host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFlags(append([]string{"--scenario", "fanout", "--token", "x"}, tc.args...), &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
	cfg, err := ParseFlags([]string{"--scenario", "fanout", "--token", "x", "--server-pid", "12,0,14", "--redis", "localhost:6380",
		"--url", "ws://127.0.0.1:7701/ws,ws://127.0.0.1:7702/ws"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ServerPIDs) != 2 || cfg.ServerPID != 12 || cfg.ServerPIDs[1] != 14 {
		t.Errorf("server pids: got %v (first %d), want [12 14]", cfg.ServerPIDs, cfg.ServerPID)
	}
	if len(cfg.Redis) != 1 || cfg.Redis[0] != "127.0.0.1:6380" {
		t.Errorf("redis: got %v, want [127.0.0.1:6380]", cfg.Redis)
	}
	if len(cfg.nodes) != 2 || cfg.target != "127.0.0.1:7701" || cfg.nodes[1].u.String() != "ws://127.0.0.1:7702/ws" {
		t.Errorf("nodes: got %v (target %s), want 7701 then 7702", cfg.nodes, cfg.target)
	}
}

// TestBenchNodePlacement checks where each kind of connection goes with
// three nodes: what the scenario measures must cross nodes.
func TestBenchNodePlacement(t *testing.T) {
	three := "ws://127.0.0.1:7701/ws,ws://127.0.0.1:7702/ws,ws://127.0.0.1:7703/ws"
	for _, tc := range []struct {
		name string
		args []string
		want []int // node of connection 0, 1, ...
	}{
		// 5 subscribers round-robin, then the WebSocket publisher on node 0.
		{"fanout", []string{"--scenario", "fanout", "--token", "x", "--conns", "5"}, []int{0, 1, 2, 0, 1, 0}},
		// 3 subscribers, no WebSocket publisher (REST posts to node 0), 2
		// pingers round-robin by index, 3 machines off node 0, 2 callers on node 0.
		{"mixed", []string{"--scenario", "mixed", "--data", "d", "--conns", "3", "--publish-via", "rest", "--pingers", "2",
			"--machines", "3", "--callers", "2"}, []int{0, 1, 2, 0, 1, 1, 2, 1, 0, 0}},
		// 3 machines off node 0, then the callers on node 0.
		{"relay", []string{"--scenario", "relay", "--data", "d", "--machines", "3", "--conns", "2"}, []int{1, 2, 1, 0, 0}},
		{"idle", []string{"--scenario", "idle", "--token", "x", "--conns", "4"}, []int{0, 1, 2, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseFlags(append(tc.args, "--url", three), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			d := &benchDialer{nodes: cfg.nodes, nodeOf: cfg.nodeOf()}
			for i, want := range tc.want {
				if got := d.node(i); got.target != cfg.nodes[want].target {
					t.Errorf("connection %d: got %s, want node %d (%s)", i, got.target, want, cfg.nodes[want].target)
				}
			}
		})
	}
	// One node: everything on it.
	cfg, err := ParseFlags([]string{"--scenario", "relay", "--data", "d", "--machines", "3"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.nodeOf() != nil || cfg.nodeCount() != 0 {
		t.Errorf("one node: got a placement function or a node count %d, want none", cfg.nodeCount())
	}
}

// TestBenchRedisInfo parses INFO replies as redis-server 7 writes them and
// derives the per-publication figures.
func TestBenchRedisInfo(t *testing.T) {
	parse := func(bodies ...string) redisInfo {
		info := redisInfo{calls: map[string]int64{}}
		for _, b := range bodies {
			parseRedisInfo(b, &info)
		}
		return info
	}
	before := parse("# Commandstats\r\n"+
		"cmdstat_evalsha:calls=10,usec=230,usec_per_call=23.00,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_info:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n",
		"# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.000000\r\n")
	after := parse("# Commandstats\r\n"+
		"cmdstat_evalsha:calls=110,usec=2300,usec_per_call=23.00,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_hincrby:calls=100,usec=240,usec_per_call=2.40,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_publish:calls=100,usec=200,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_client|setname:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_info:calls=9,usec=90,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n",
		"# CPU\r\nused_cpu_sys:2.000000\r\nused_cpu_user:3.000000\r\nused_cpu_sys_children:9.000000\r\n")
	if before.cpu != 3.75 || before.calls["evalsha"] != 10 {
		t.Fatalf("before: got %+v, want cpu 3.75 and 10 evalsha", before)
	}
	p := &serverProbe{redis: []string{"127.0.0.1:1"}, redis0: []redisInfo{before}, redis1: []redisInfo{after}}
	s := p.redisStats(&Result{Fanout: &FanoutResult{Publications: 100}})
	if s.Error != "" || s.Commands != 302 || s.Scripts != 100 || s.CommandsPerPublication != 3.02 || s.ScriptsPerPublication != 1 {
		t.Errorf("got %+v, want 302 commands (info left out), 100 scripts, 3.02 and 1 per publication", s)
	}
	if s.CPUSeconds != 1.25 || s.ByCommand["client|setname"] != 2 {
		t.Errorf("got cpu %g, by command %v; want 1.25 s and client|setname 2", s.CPUSeconds, s.ByCommand)
	}
	if s := (&serverProbe{redis: []string{"127.0.0.1:1"}}).redisStats(&Result{}); s == nil || s.Error == "" {
		t.Errorf("unread shards: got %+v, want an error", s)
	}
}
