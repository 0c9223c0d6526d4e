package main

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// mapRow is one row of the package map in docs/ARCHITECTURE.md.
type mapRow struct {
	path        string   // "internal/hub"
	floor       int      // the row's floor
	ours        []string // short names it may import: "protocol", "auth"
	thirdParty  []string // module paths it may import
	notYetBuilt bool     // marked *new*: the package may not exist yet
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readPackageMap parses the table under "## Package map".
func readPackageMap(t *testing.T, doc string) map[string]*mapRow {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n## Package map\n")
	if !ok {
		t.Fatal("docs/ARCHITECTURE.md has no \"## Package map\" section")
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	rows := make(map[string]*mapRow)
	names := func(cell string) []string {
		var out []string
		for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) != 7 {
			t.Fatalf("package map row %q: got %d cells, want 5", line, len(cells)-2)
		}
		floor, err := strconv.Atoi(strings.TrimSpace(cells[2]))
		if err != nil {
			t.Fatalf("package map row %q: floor: %v", line, err)
		}
		r := &mapRow{path: strings.Trim(strings.TrimSpace(cells[1]), "`"), floor: floor,
			ours: names(cells[4]), thirdParty: names(cells[5]), notYetBuilt: strings.Contains(cells[3], "*new*")}
		rows[r.path] = r
	}
	if len(rows) == 0 {
		t.Fatal("the package map has no rows")
	}
	return rows
}

// TestPackageMap checks the package map of docs/ARCHITECTURE.md against the
// imports of the code, on each GOOS the project builds for: every package
// has a row, imports only what its row allows, and sits on a floor above
// every package its row allows. Test files are not checked.
func TestPackageMap(t *testing.T) {
	const module = "github.com/junctionhq/junction"
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := readPackageMap(t, string(doc))
	byShort := make(map[string]*mapRow)
	for _, r := range rows {
		byShort[r.path[strings.LastIndex(r.path, "/")+1:]] = r
	}
	for _, r := range rows {
		for _, name := range r.ours {
			q := byShort[name]
			if q == nil {
				t.Errorf("%s: may import %q, which has no row", r.path, name)
			} else if q.floor >= r.floor {
				t.Errorf("%s (floor %d) may import %s (floor %d): imports must point to a lower floor", r.path, r.floor, q.path, q.floor)
			}
		}
	}

	// The non-test imports of every package, over the GOOS values we build for.
	imports := make(map[string][]string) // package path (relative) → imports
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		for _, goos := range []string{"linux", "darwin", "windows"} {
			ctxt := build.Default
			ctxt.GOOS, ctxt.GOARCH, ctxt.CgoEnabled = goos, "amd64", false
			pkg, err := ctxt.ImportDir(path, 0)
			if _, ok := errors.AsType[*build.NoGoError](err); ok {
				continue
			}
			if err != nil {
				return err
			}
			key := filepath.ToSlash(rel)
			for _, imp := range pkg.Imports {
				if !slices.Contains(imports[key], imp) {
					imports[key] = append(imports[key], imp)
				}
			}
			if _, ok := imports[key]; !ok {
				imports[key] = nil
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 10 {
		t.Fatalf("found %d packages under %s, want the whole module", len(imports), root)
	}

	for path, imps := range imports {
		r := rows[path]
		if r == nil {
			t.Errorf("package %s has no row in the package map of docs/ARCHITECTURE.md", path)
			continue
		}
		for _, imp := range imps {
			switch {
			case strings.HasPrefix(imp, module+"/"):
				rel := strings.TrimPrefix(imp, module+"/")
				short := rel[strings.LastIndex(rel, "/")+1:]
				if q := byShort[short]; q == nil || q.path != rel || !slices.Contains(r.ours, short) {
					t.Errorf("%s imports %s, which its row in docs/ARCHITECTURE.md does not allow", path, rel)
				}
			case strings.Contains(strings.Split(imp, "/")[0], "."):
				if !slices.ContainsFunc(r.thirdParty, func(m string) bool { return imp == m || strings.HasPrefix(imp, m+"/") }) {
					t.Errorf("%s imports %s, a third-party package its row in docs/ARCHITECTURE.md does not list", path, imp)
				}
			}
		}
	}
	for path, r := range rows {
		if _, ok := imports[path]; !ok && !r.notYetBuilt {
			t.Errorf("the package map has a row for %s, which does not exist", path)
		}
	}
}
