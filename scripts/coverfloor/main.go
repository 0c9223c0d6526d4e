// Command coverfloor reads a coverage profile of the whole suite (go test
// -coverpkg=./... -coverprofile=FILE ./...), prints each package's
// coverage — the statements of the package that any test of the module ran,
// its own tests or another package's (the end-to-end tests of cmd/junction
// drive most of the server) — and fails when a package is below its floor.
//
// The floors are in a file (default scripts/coverfloor/floors.txt), one
// "PACKAGE PERCENT" a line, PACKAGE relative to the module ("internal/web");
// "default PERCENT" is the floor of every package not listed (a package
// added since the floors were last set), "total PERCENT" the floor of the
// whole module. scripts/test.sh runs it after the race pass:
//
//	go run ./scripts/coverfloor -profile cover.out
//
// With -write it rewrites the floors file from the profile instead: each
// package's figure, and the total, minus -margin points (noise between runs:
// timing decides some paths), keeping the default. Raise the floors so as
// code and tests land; lower one only with a reason in the commit.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

func main() {
	profile := flag.String("profile", "", "coverage profile of the whole suite (go test -coverpkg=./... -coverprofile)")
	floorsPath := flag.String("floors", "scripts/coverfloor/floors.txt", "floors file")
	module := flag.String("module", "github.com/junctionhq/junction", "module path, stripped from package names")
	write := flag.Bool("write", false, "rewrite the floors file from the profile (figure minus -margin) instead of checking")
	margin := flag.Float64("margin", 2, "with -write: points below today's figure")
	flag.Parse()
	if *profile == "" {
		fmt.Fprintln(os.Stderr, "coverfloor: -profile is required")
		os.Exit(2)
	}
	os.Exit(run(*profile, *floorsPath, *module, *write, *margin, os.Stdout))
}

func run(profilePath, floorsPath, module string, write bool, margin float64, w io.Writer) int {
	f, err := os.Open(profilePath)
	if err != nil {
		fmt.Fprintf(w, "coverfloor: %v\n", err)
		return 2
	}
	cov, err := parseProfile(f, module)
	f.Close()
	if err != nil {
		fmt.Fprintf(w, "coverfloor: read %s: %v\n", profilePath, err)
		return 2
	}
	if write {
		if err := os.WriteFile(floorsPath, formatFloors(cov, margin, defaultFloorOf(floorsPath)), 0o644); err != nil {
			fmt.Fprintf(w, "coverfloor: %v\n", err)
			return 2
		}
		fmt.Fprintf(w, "coverfloor: wrote %s (today's figures minus %.1f points)\n", floorsPath, margin)
		return 0
	}
	data, err := os.ReadFile(floorsPath)
	if err != nil {
		fmt.Fprintf(w, "coverfloor: %v\n", err)
		return 2
	}
	fl, err := parseFloors(string(data))
	if err != nil {
		fmt.Fprintf(w, "coverfloor: %s: %v\n", floorsPath, err)
		return 2
	}
	return check(cov, fl, floorsPath, w)
}

// counts are the statements of one package and those any test ran.
type counts struct{ stmts, covered int }

func (c counts) percent() float64 {
	if c.stmts == 0 {
		return 100
	}
	return 100 * float64(c.covered) / float64(c.stmts)
}

// coverage is a profile summed up per package.
type coverage struct {
	pkgs  map[string]counts // by package path relative to the module
	total counts
}

// parseProfile reads a coverage profile. A profile of several test
// binaries (go test ./... -coverpkg) lists each block once per binary: a
// block counts once, as covered when any binary ran it.
func parseProfile(r io.Reader, module string) (*coverage, error) {
	type block struct {
		pkg     string
		stmts   int
		covered bool
	}
	blocks := map[string]*block{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if s == "" || strings.HasPrefix(s, "mode:") {
			continue
		}
		// name.go:line.col,line.col numStmts count
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: %q is not a profile block", line, s)
		}
		colon := strings.LastIndexByte(f[0], ':')
		if colon < 0 {
			return nil, fmt.Errorf("line %d: %q has no file name", line, s)
		}
		stmts, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || stmts < 0 || count < 0 {
			return nil, fmt.Errorf("line %d: bad counts in %q", line, s)
		}
		b := blocks[f[0]]
		if b == nil {
			pkg := path.Dir(f[0][:colon])
			if pkg == module {
				pkg = "."
			} else {
				pkg = strings.TrimPrefix(pkg, module+"/")
			}
			b = &block{pkg: pkg, stmts: stmts}
			blocks[f[0]] = b
		}
		b.covered = b.covered || count > 0
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no coverage blocks")
	}
	cov := &coverage{pkgs: map[string]counts{}}
	for _, b := range blocks {
		c := cov.pkgs[b.pkg]
		c.stmts += b.stmts
		cov.total.stmts += b.stmts
		if b.covered {
			c.covered += b.stmts
			cov.total.covered += b.stmts
		}
		cov.pkgs[b.pkg] = c
	}
	return cov, nil
}

// floors is a parsed floors file.
type floors struct {
	pkg   map[string]floor
	def   *floor // "default"
	total *floor // "total"
}

type floor struct {
	percent float64
	line    int
}

func parseFloors(s string) (*floors, error) {
	fl := &floors{pkg: map[string]floor{}}
	for i, l := range strings.Split(s, "\n") {
		if j := strings.IndexByte(l, '#'); j >= 0 {
			l = l[:j]
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"PACKAGE PERCENT\", got %q", i+1, strings.TrimSpace(l))
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return nil, fmt.Errorf("line %d: %q is not a percentage", i+1, f[1])
		}
		v := floor{percent: p, line: i + 1}
		switch f[0] {
		case "default":
			fl.def = &v
		case "total":
			fl.total = &v
		default:
			if _, dup := fl.pkg[f[0]]; dup {
				return nil, fmt.Errorf("line %d: %s listed twice", i+1, f[0])
			}
			fl.pkg[f[0]] = v
		}
	}
	if fl.def == nil {
		return nil, fmt.Errorf(`no "default PERCENT" line (the floor of packages not listed)`)
	}
	return fl, nil
}

// check prints the table and the verdict; it returns 1 when a package (or
// the total) is below its floor.
func check(cov *coverage, fl *floors, floorsPath string, w io.Writer) int {
	names := make([]string, 0, len(cov.pkgs))
	for p := range cov.pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	type failure struct {
		pkg     string
		got     float64
		floor   floor
		listed  bool
		isTotal bool
	}
	var fails []failure
	fmt.Fprintf(w, "== coverage of the whole suite per package (floors: %s)\n", floorsPath)
	fmt.Fprintf(w, "   %-34s %8s %8s %7s %7s\n", "package", "stmts", "covered", "cover", "floor")
	for _, p := range names {
		c := cov.pkgs[p]
		if c.stmts == 0 {
			continue
		}
		f, listed := fl.pkg[p]
		if !listed {
			f = *fl.def
		}
		mark, note := "", ""
		if !listed {
			note = " (default)"
		}
		// Compare at the precision printed, so that what the table shows
		// is what decided.
		if round1(c.percent()) < f.percent {
			mark = "  BELOW"
			fails = append(fails, failure{pkg: p, got: c.percent(), floor: f, listed: listed})
		}
		fmt.Fprintf(w, "   %-34s %8d %8d %6.1f%% %6.1f%%%s%s\n", p, c.stmts, c.covered, c.percent(), f.percent, note, mark)
	}
	if fl.total != nil {
		mark := ""
		if round1(cov.total.percent()) < fl.total.percent {
			mark = "  BELOW"
			fails = append(fails, failure{pkg: "total", got: cov.total.percent(), floor: *fl.total, listed: true, isTotal: true})
		}
		fmt.Fprintf(w, "   %-34s %8d %8d %6.1f%% %6.1f%%%s\n", "total", cov.total.stmts, cov.total.covered, cov.total.percent(), fl.total.percent, mark)
	} else {
		fmt.Fprintf(w, "   %-34s %8d %8d %6.1f%%\n", "total", cov.total.stmts, cov.total.covered, cov.total.percent())
	}
	for p := range fl.pkg {
		if _, ok := cov.pkgs[p]; !ok {
			fmt.Fprintf(w, "   note: %s (line %d of %s) is in no package of the profile: remove the line if the package is gone\n", p, fl.pkg[p].line, floorsPath)
		}
	}
	if len(fails) == 0 {
		fmt.Fprintln(w, "== coverage floors: all met")
		return 0
	}
	for _, f := range fails {
		switch {
		case f.isTotal:
			fmt.Fprintf(w, "== COVERAGE BELOW FLOOR: the whole module has %.1f%% of its statements covered, below its floor %.1f%% (%s line %d)\n", f.got, f.floor.percent, floorsPath, f.floor.line)
		case f.listed:
			fmt.Fprintf(w, "== COVERAGE BELOW FLOOR: package %s has %.1f%% of its statements covered by the suite, below its floor %.1f%% (%s line %d)\n", f.pkg, f.got, f.floor.percent, floorsPath, f.floor.line)
		default:
			fmt.Fprintf(w, "== COVERAGE BELOW FLOOR: package %s has %.1f%% of its statements covered by the suite, below the default floor %.1f%% of packages not listed (%s line %d)\n", f.pkg, f.got, f.floor.percent, floorsPath, f.floor.line)
		}
	}
	fmt.Fprintf(w, "== add tests that run the uncovered paths (go tool cover -html=PROFILE shows them). If the drop is intended, change the package's line in %s (add \"PACKAGE PERCENT\" for a new package), with the reason in the commit message; to set every floor from a run: go run ./scripts/coverfloor -profile PROFILE -write\n", floorsPath)
	return 1
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// defaultFloorOf returns the default floor of the floors file at p, or 60.
func defaultFloorOf(p string) float64 {
	if data, err := os.ReadFile(p); err == nil {
		if fl, err := parseFloors(string(data)); err == nil {
			return fl.def.percent
		}
	}
	return 60
}

// formatFloors writes the floors file for cov: each package's figure minus
// margin, rounded down to a tenth.
func formatFloors(cov *coverage, margin, def float64) []byte {
	var b strings.Builder
	b.WriteString(`# Coverage floors of the whole suite (go test -coverpkg=./...), checked by
# scripts/coverfloor after the race pass of scripts/test.sh: PACKAGE PERCENT,
# the package relative to the module. "default" applies to every package not
# listed (one added since), "total" to the whole module. Written by
#   go run ./scripts/coverfloor -profile PROFILE -write
# as each figure minus a margin for noise (some paths depend on timing).
# Raise a floor when tests land; lower one only with the reason in the commit.
`)
	fmt.Fprintf(&b, "default %.1f\n", def)
	fmt.Fprintf(&b, "total %.1f\n", floorBelow(cov.total.percent(), margin))
	names := make([]string, 0, len(cov.pkgs))
	for p := range cov.pkgs {
		if cov.pkgs[p].stmts > 0 {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		fmt.Fprintf(&b, "%s %.1f\n", p, floorBelow(cov.pkgs[p].percent(), margin))
	}
	return []byte(b.String())
}

func floorBelow(x, margin float64) float64 {
	return max(0, math.Floor((x-margin)*10)/10)
}
