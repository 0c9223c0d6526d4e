package schedule

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // time zones without the host's zoneinfo (the container image is FROM scratch)

	"github.com/robfig/cron/v3"

	"github.com/junctionhq/junction/protocol"
)

// Job limits.
const (
	maxCronBytes     = 256
	maxPublishBytes  = 64 << 10
	maxRPCParamBytes = 64 << 10
)

// checks validate what a job names outside itself; a nil func skips its
// check (the stored jobs a node reads again were checked when created).
type checks struct {
	topic   func(string) error // a publication's topic matches a namespace
	backend func(string) bool  // a backend call's backend is configured
}

var namePattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// cronParser reads five fields (minute hour day-of-month month day-of-week),
// six with seconds first, and the descriptors @yearly ... @hourly. The
// library is used for parsing and Next only: the scheduler's loop, leases
// and history are ours.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseCron parses expr for the zone loc. Prefixes TZ= and CRON_TZ= are
// refused (the zone is the job's timeZone), and so is @every: a constant
// delay counts from each node's start, so nodes would not agree on ticks.
func parseCron(expr string, loc *time.Location) (s cron.Schedule, err error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, fmt.Errorf("required")
	case len(expr) > maxCronBytes:
		return nil, fmt.Errorf("over %d bytes", maxCronBytes)
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, fmt.Errorf("give the time zone in timeZone, not in the expression")
	case strings.HasPrefix(expr, "@every"):
		return nil, fmt.Errorf("@every is not supported: its ticks depend on when each node started; use a cron expression")
	}
	defer func() {
		if v := recover(); v != nil { // the parser's own bugs must not take a request down
			s, err = nil, fmt.Errorf("cannot parse %q", expr)
		}
	}()
	s, err = cronParser.Parse(expr)
	if err != nil {
		return nil, err
	}
	if next(s, loc, time.Now()).IsZero() {
		return nil, fmt.Errorf("%q never fires", expr)
	}
	return s, nil
}

// next returns the first tick of s in loc strictly after t, in UTC; zero
// when there is none within the library's search horizon (five years).
func next(s cron.Schedule, loc *time.Location, t time.Time) time.Time {
	n := s.Next(t.In(loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// loadZone reads an IANA zone name; "" is UTC. "Local" is refused: it
// would mean another zone on each node.
func loadZone(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("Local depends on the host: name an IANA zone such as Europe/Paris")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown IANA time zone %q", name)
	}
	return loc, nil
}

// job is one scheduled job.
type job struct {
	spec    protocol.ScheduleSpec // set once; TimeZone filled
	source  string                // set once: sourceConfig or sourceAPI
	created time.Time             // set once; zero for config jobs
	sched   cron.Schedule         // set once
	loc     *time.Location        // set once
	raw     string                // set once: the spec's JSON, to see changes on reload

	next time.Time     // guarded by Scheduler.mu: the next tick
	busy chan struct{} // a one-slot semaphore: a run of this job is in progress
}

const (
	sourceConfig = "config"
	sourceAPI    = "api"
)

// newJob validates spec (with chk) and builds its job.
func newJob(spec protocol.ScheduleSpec, source string, created time.Time, chk checks) (*job, error) {
	if !namePattern.MatchString(spec.Name) {
		return nil, protocol.FieldError("name", "want 1..64 bytes of a-z, 0-9, '.', '_', '-'")
	}
	loc, err := loadZone(spec.TimeZone)
	if err != nil {
		return nil, protocol.FieldError("timeZone", "%v", err)
	}
	spec.TimeZone = loc.String()
	sched, err := parseCron(spec.Cron, loc)
	if err != nil {
		return nil, protocol.FieldError("cron", "%v", err)
	}
	if err := checkAction(&spec.Action, chk); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return &job{spec: spec, source: source, created: created, sched: sched, loc: loc, raw: string(raw), busy: make(chan struct{}, 1)}, nil
}

// checkAction validates a (and compacts its JSON): exactly one action.
// A new kind of action adds its member to protocol.ScheduleAction, a case
// here and one in Scheduler.act.
func checkAction(a *protocol.ScheduleAction, chk checks) error {
	n := 0
	for _, set := range []bool{a.Publish != nil, a.RPC != nil, a.Backend != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return protocol.FieldError("action", "want exactly one of publish, rpc, backend")
	}
	switch {
	case a.Publish != nil:
		p := a.Publish
		if p.Topic == "" {
			return protocol.FieldError("action.publish.topic", "required")
		}
		if chk.topic != nil {
			if err := chk.topic(p.Topic); err != nil {
				pe := protocol.AsError(err)
				return protocol.FieldError("action.publish.topic", "%s", pe.Message)
			}
		}
		if len(p.Data) == 0 || string(p.Data) == "null" {
			return protocol.FieldError("action.publish.data", "required (any JSON value but null)")
		}
		if len(p.Data) > maxPublishBytes {
			return protocol.FieldError("action.publish.data", "over %d bytes", maxPublishBytes)
		}
		data, err := protocol.Compact(p.Data)
		if err != nil {
			return protocol.FieldError("action.publish.data", "invalid JSON")
		}
		p.Data = data
	case a.RPC != nil:
		r := a.RPC
		for field, v := range map[string]string{"user": r.User, "device": r.Device, "method": r.Method} {
			if v == "" {
				return protocol.FieldError("action.rpc."+field, "required")
			}
			if len(v) > protocol.MaxIDLength {
				return protocol.FieldError("action.rpc."+field, "over %d bytes", protocol.MaxIDLength)
			}
		}
		if r.TimeoutMs < 0 {
			return protocol.FieldError("action.rpc.timeoutMs", "must not be negative")
		}
		params, err := checkParams("action.rpc.params", r.Params)
		if err != nil {
			return err
		}
		r.Params = params
	case a.Backend != nil:
		b := a.Backend
		for _, f := range []struct{ field, v string }{{"backend", b.Backend}, {"user", b.User}, {"method", b.Method}} {
			if f.v == "" {
				return protocol.FieldError("action.backend."+f.field, "required")
			}
			if len(f.v) > protocol.MaxIDLength {
				return protocol.FieldError("action.backend."+f.field, "over %d bytes", protocol.MaxIDLength)
			}
		}
		if chk.backend != nil && !chk.backend(b.Backend) {
			return protocol.FieldError("action.backend.backend", "no backend named %q in proxy.backends", b.Backend)
		}
		params, err := checkParams("action.backend.params", b.Params)
		if err != nil {
			return err
		}
		b.Params = params
	}
	return nil
}

// checkParams validates a call's params: absent, null or a JSON object of
// at most maxRPCParamBytes, returned compacted (nil when absent).
func checkParams(field string, raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > maxRPCParamBytes {
		return nil, protocol.FieldError(field, "over %d bytes", maxRPCParamBytes)
	}
	params, err := protocol.Compact(raw)
	if err != nil || params[0] != '{' {
		return nil, protocol.FieldError(field, "want a JSON object")
	}
	return params, nil
}

// wire returns the job as the admin API shows it.
func (j *job) wire(nextRun time.Time) protocol.Schedule {
	return protocol.Schedule{Name: j.spec.Name, Cron: j.spec.Cron, TimeZone: j.spec.TimeZone, Action: j.spec.Action,
		Source: j.source, NextRunAt: nextRun, CreatedAt: j.created}
}
