package jsonscan

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

var valueSeeds = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e-3`, `true`, `false`, `null`,
	`{"a":[1,2,{"b":"c\u00e9\n"}],"d":-12.0E+2}`, ` { "a" : 1 } `,
	`{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `1e`, `"\x"`, `"\u12"`, `tru`, `{"a"}`, `{1:2}`, `"a`, `[`, `-`,
}

// TestValueMatchesValid checks Value against json.Valid.
func TestValueMatchesValid(t *testing.T) {
	for _, s := range valueSeeds {
		checkValue(t, []byte(s))
	}
}

func checkValue(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) {
		return // Value leaves UTF-8 to its caller
	}
	i := Space(b, 0)
	end, ok := Value(b, i)
	got := ok && Space(b, end) == len(b)
	if want := json.Valid(b); got != want {
		t.Fatalf("%q: Value says valid %v, json.Valid %v", b, got, want)
	}
}

func TestUintInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42,", 42, true}, {"-7}", -7, true}, {"01", 0, false}, {"1.0", 0, false},
		{"1e3", 0, false}, {"", 0, false}, {"-", 0, false}, {"9223372036854775807", 0, false}, {"922337203685477580", 922337203685477580, true},
	} {
		n, _, ok := Int([]byte(tc.in), 0)
		if ok != tc.ok || (ok && n != tc.want) {
			t.Errorf("Int(%q): got %d, %v; want %d, %v", tc.in, n, ok, tc.want, tc.ok)
		}
	}
}

func FuzzValue(f *testing.F) {
	for _, s := range valueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkValue(t, b) })
}
