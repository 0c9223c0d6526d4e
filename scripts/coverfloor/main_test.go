package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// profile is what go test -coverpkg=./... ./... writes for two test
// binaries (a and b's tests): every block once per binary.
const profile = `mode: atomic
m/a/a.go:1.1,2.2 3 0
m/a/a.go:3.1,4.2 1 5
m/b/b.go:1.1,2.2 4 0
m/b/b.go:3.1,4.2 4 0
m/c/c.go:1.1,2.2 2 0
m/a/a.go:1.1,2.2 3 7
m/a/a.go:3.1,4.2 1 0
m/b/b.go:1.1,2.2 4 1
m/b/b.go:3.1,4.2 4 0
m/c/c.go:1.1,2.2 2 0
m/main.go:1.1,2.2 5 1
`

func TestParseProfileMergesBinaries(t *testing.T) {
	cov, err := parseProfile(strings.NewReader(profile), "m")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]counts{"a": {4, 4}, "b": {8, 4}, "c": {2, 0}, ".": {5, 5}}
	for p, w := range want {
		if got := cov.pkgs[p]; got != w {
			t.Errorf("package %s: got %+v, want %+v", p, got, w)
		}
	}
	if len(cov.pkgs) != len(want) {
		t.Errorf("packages %v, want %d", cov.pkgs, len(want))
	}
	if got := cov.total; got != (counts{19, 13}) {
		t.Errorf("total %+v, want {19 13}", got)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cover.out")
	if err := os.WriteFile(prof, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, floors string
		status       int
		want         []string // in the output
	}{
		{
			name:   "met",
			floors: "default 0\na 100\nb 50 # half\ntotal 68.4\n",
			status: 0, want: []string{"coverage floors: all met", "b      ", "50.0%"},
		},
		{
			name:   "listed package below",
			floors: "# floors\ndefault 0\nb 50.1\n",
			status: 1, want: []string{"package b has 50.0% of its statements covered by the suite, below its floor 50.1% (FLOORS line 3)", "-write"},
		},
		{
			name:   "new package below the default",
			floors: "default 60\na 0\nb 0\n. 0\n",
			status: 1, want: []string{"package c has 0.0% of its statements covered by the suite, below the default floor 60.0% of packages not listed (FLOORS line 1)"},
		},
		{
			name:   "total below",
			floors: "default 0\ntotal 70\n",
			status: 1, want: []string{"the whole module has 68.4% of its statements covered, below its floor 70.0% (FLOORS line 2)"},
		},
		{
			name:   "gone package",
			floors: "default 0\nold 90\n",
			status: 0, want: []string{"old (line 2 of FLOORS) is in no package of the profile"},
		},
		{name: "no default", floors: "a 10\n", status: 2, want: []string{`no "default PERCENT" line`}},
		{name: "bad line", floors: "default 10\na ten\n", status: 2, want: []string{`line 2: "ten" is not a percentage`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := filepath.Join(dir, tc.name+".txt")
			if err := os.WriteFile(fp, []byte(tc.floors), 0o644); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			status := run(prof, fp, "m", false, 0, &out)
			got := strings.ReplaceAll(out.String(), fp, "FLOORS")
			if status != tc.status {
				t.Errorf("status %d, want %d; output:\n%s", status, tc.status, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestWriteThenCheck: floors written from a profile (minus the margin) are
// met by the same profile, keep the default, and a package that then loses
// coverage fails.
func TestWriteThenCheck(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cover.out")
	fp := filepath.Join(dir, "floors.txt")
	if err := os.WriteFile(prof, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fp, []byte("default 42.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if st := run(prof, fp, "m", true, 2, &out); st != 0 {
		t.Fatalf("write: status %d: %s", st, out.String())
	}
	data, _ := os.ReadFile(fp)
	for _, w := range []string{"default 42.5\n", "total 66.4\n", "a 98.0\n", "b 48.0\n", "c 0.0\n", ". 98.0\n"} {
		if !strings.Contains(string(data), w) {
			t.Errorf("floors file lacks %q:\n%s", w, data)
		}
	}
	out.Reset()
	if st := run(prof, fp, "m", false, 0, &out); st != 0 {
		t.Fatalf("the profile the floors were written from fails them: %s", out.String())
	}
	worse := strings.Replace(profile, "m/b/b.go:1.1,2.2 4 1", "m/b/b.go:1.1,2.2 4 0", 1)
	if err := os.WriteFile(prof, []byte(worse), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if st := run(prof, fp, "m", false, 0, &out); st != 1 || !strings.Contains(out.String(), "package b has 0.0%") {
		t.Fatalf("b lost its coverage: status %d, output:\n%s", st, out.String())
	}
}
