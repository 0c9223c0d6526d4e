package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RedisStats is the redis section of the result line (--redis): what the
// Redis shards the nodes share executed over the measured phase and its
// drain, from INFO commandstats and INFO cpu read at both ends, summed over
// the shards. Commands run by a Lua script count one each beside the script
// itself (Redis counts both); the probe's own INFO commands are left out.
// Background work of the nodes (lease and claim refreshes every few
// seconds, position checks every 5 s) is included: at a few hundred
// publications per second or more it is noise.
type RedisStats struct {
	Shards   int   `json:"shards"`
	Commands int64 `json:"commands"`
	// Scripts are the EVAL/EVALSHA/FCALL commands among Commands (a
	// publication is one script).
	Scripts int64 `json:"scripts"`
	// Per publication (fanout, mixed) or per relayed call (relay).
	CommandsPerPublication float64 `json:"commands_per_publication,omitempty"`
	ScriptsPerPublication  float64 `json:"scripts_per_publication,omitempty"`
	CommandsPerCall        float64 `json:"commands_per_call,omitempty"`
	// CPUSeconds is used_cpu_user + used_cpu_sys of every shard.
	CPUSeconds float64          `json:"cpu_s"`
	ByCommand  map[string]int64 `json:"by_command,omitempty"`
	Error      string           `json:"error,omitempty"`
}

// redisInfo is what one INFO read of one shard gave.
type redisInfo struct {
	calls map[string]int64 // command name (lower case, "|" for subcommands) → calls
	cpu   float64          // used_cpu_user + used_cpu_sys
	err   error
}

// readRedisInfos reads every shard's counters; a shard that does not answer
// gets its error in its redisInfo.
func readRedisInfos(ctx context.Context, addrs []string) []redisInfo {
	if len(addrs) == 0 {
		return nil
	}
	out := make([]redisInfo, len(addrs))
	for i, a := range addrs {
		out[i] = readRedisInfo(ctx, a)
	}
	return out
}

// readRedisInfo sends INFO commandstats and INFO cpu to the Redis server at
// the loopback address addr (checked by ParseFlags) over RESP, without a
// client library: two bulk-string replies.
func readRedisInfo(ctx context.Context, addr string) redisInfo {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return redisInfo{err: fmt.Errorf("redis %s: %w", addr, err)}
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := io.WriteString(nc, "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n"); err != nil {
		return redisInfo{err: fmt.Errorf("redis %s: send INFO: %w", addr, err)}
	}
	br := bufio.NewReader(nc)
	info := redisInfo{calls: map[string]int64{}}
	for range 2 {
		body, err := readBulk(br)
		if err != nil {
			return redisInfo{err: fmt.Errorf("redis %s: INFO: %w", addr, err)}
		}
		parseRedisInfo(body, &info)
	}
	return info
}

// readBulk reads one RESP bulk-string reply (an error reply is an error).
func readBulk(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if rest, ok := strings.CutPrefix(line, "-"); ok {
		return "", errors.New(rest)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(line, "$"))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 || n > 1<<20 {
		return "", fmt.Errorf("unexpected reply %.100q", line)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// parseRedisInfo adds the lines of an INFO reply it knows to info:
// "cmdstat_NAME:calls=N,..." and "used_cpu_{user,sys}:SECONDS".
func parseRedisInfo(body string, info *redisInfo) {
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(key, "cmdstat_"); ok {
			field, _, _ := strings.Cut(val, ",")
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					info.calls[name] += n
				}
			}
			continue
		}
		if key == "used_cpu_user" || key == "used_cpu_sys" {
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				info.cpu += f
			}
		}
	}
}

// isScript reports whether the command name runs a script or function.
func isScript(name string) bool {
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		return true
	}
	return false
}

// redisStats derives the redis section for r from the reads at begin and
// end, or nil without --redis.
func (p *serverProbe) redisStats(r *Result) *RedisStats {
	if len(p.redis) == 0 {
		return nil
	}
	s := &RedisStats{Shards: len(p.redis), ByCommand: map[string]int64{}}
	if len(p.redis0) != len(p.redis) || len(p.redis1) != len(p.redis) {
		s.Error = "redis not read at both ends of the measured phase"
		return s
	}
	for i := range p.redis {
		a, b := p.redis0[i], p.redis1[i]
		if err := errors.Join(a.err, b.err); err != nil {
			s.Error = err.Error()
			return s
		}
		s.CPUSeconds += b.cpu - a.cpu
		for name, n := range b.calls {
			if name == "info" {
				continue
			}
			if d := n - a.calls[name]; d > 0 {
				s.ByCommand[name] += d
			}
		}
	}
	for name, n := range s.ByCommand {
		s.Commands += n
		if isScript(name) {
			s.Scripts += n
		}
	}
	if f := r.Fanout; f != nil && f.Publications > 0 {
		s.CommandsPerPublication = float64(s.Commands) / float64(f.Publications)
		s.ScriptsPerPublication = float64(s.Scripts) / float64(f.Publications)
	}
	if rr := r.Relay; rr != nil && rr.Calls > 0 {
		s.CommandsPerCall = float64(s.Commands) / float64(rr.Calls)
	}
	return s
}
