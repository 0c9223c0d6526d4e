package main

import (
	"bytes"
	"strings"
	"testing"
)

// A go test -json stream: a passing test, a failing one, an expected skip,
// an unexpected skip, a package that has no tests.
const stream = `{"Action":"start","Package":"m/a"}
{"Action":"run","Package":"m/a","Test":"TestOK"}
{"Action":"output","Package":"m/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"m/a","Test":"TestOK","Output":"    a_test.go:9: chatter\n"}
{"Action":"pass","Package":"m/a","Test":"TestOK"}
{"Action":"run","Package":"m/a","Test":"TestIPv6/tcp6"}
{"Action":"output","Package":"m/a","Test":"TestIPv6/tcp6","Output":"=== RUN   TestIPv6/tcp6\n"}
{"Action":"output","Package":"m/a","Test":"TestIPv6/tcp6","Output":"    a_test.go:20: listen tcp6: no address\n"}
{"Action":"output","Package":"m/a","Test":"TestIPv6/tcp6","Output":"--- SKIP: TestIPv6/tcp6 (0.00s)\n"}
{"Action":"skip","Package":"m/a","Test":"TestIPv6/tcp6"}
{"Action":"output","Package":"m/a","Test":"TestGone","Output":"    a_test.go:30: no server\n"}
{"Action":"skip","Package":"m/a","Test":"TestGone"}
{"Action":"output","Package":"m/a","Output":"PASS\n"}
{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.1s\n"}
{"Action":"pass","Package":"m/a"}
{"Action":"output","Package":"m/b","Output":"?   \tm/b\t[no test files]\n"}
{"Action":"skip","Package":"m/b"}
`

const failing = `{"Action":"output","Package":"m/c","Test":"TestBad","Output":"    c_test.go:5: got 1, want 2\n"}
{"Action":"output","Package":"m/c","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"m/c","Test":"TestBad"}
{"Action":"output","Package":"m/c","Output":"FAIL\tm/c\t0.1s\n"}
{"Action":"fail","Package":"m/c"}
`

func TestSummary(t *testing.T) {
	allowIPv6 := []allowance{{pkg: "m/a", test: "TestIPv6/tcp6", reason: "no IPv6 here", when: always}}
	for _, tc := range []struct {
		name   string
		in     string
		allow  []allowance
		status int
		want   []string
		absent []string
	}{
		{"an unexpected skip fails", stream, allowIPv6, 1,
			[]string{"ok  \tm/a", "== skipped tests: 2 (1 expected, 1 unexpected)",
				"skip m/a TestIPv6/tcp6: a_test.go:20: listen tcp6: no address (expected: no IPv6 here)",
				"UNEXPECTED SKIP m/a TestGone: a_test.go:30: no server", "allow-list"},
			[]string{"chatter", "=== RUN", "PASS\n"}},
		{"an allowed skip whose condition does not hold is unexpected", stream,
			[]allowance{{pkg: "m/a", test: "TestIPv6/tcp6", reason: "no IPv6 here", when: func() bool { return false }}}, 1,
			[]string{"2 unexpected", "UNEXPECTED SKIP m/a TestIPv6/tcp6"}, nil},
		{"every skip allowed passes", stream,
			append(allowIPv6, allowance{pkg: "m/a", test: "TestGone", reason: "r", when: always}), 0,
			[]string{"(2 expected, 0 unexpected)"}, nil},
		{"a failure shows its output and fails", failing, nil, 1,
			[]string{"c_test.go:5: got 1, want 2", "--- FAIL: TestBad", "FAIL\tm/c", "skipped tests: 0"}, nil},
		{"a build error passes through", "# m/d\nd.go:1: syntax error\n", nil, 0,
			[]string{"d.go:1: syntax error"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := run(strings.NewReader(tc.in), &out, tc.allow); got != tc.status {
				t.Errorf("status %d, want %d\n%s", got, tc.status, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out.String(), a) {
					t.Errorf("output has %q:\n%s", a, out.String())
				}
			}
		})
	}
}

// The allow-list names tests that exist, with reasons.
func TestAllowList(t *testing.T) {
	for _, a := range allowed {
		if a.pkg == "" || a.test == "" || a.reason == "" || a.when == nil {
			t.Errorf("incomplete allowance %+v", a)
		}
	}
}
