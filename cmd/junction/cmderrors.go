package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseFlags parses args with fs. --help prints the command's usage to
// stderr and returns flag.ErrHelp; any other error returns one line with a
// hint, without the usage (the flag package would print the error and the
// whole usage, and run would print the error again).
func parseFlags(fs *flag.FlagSet, command string, args []string, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stderr)
		fs.Usage()
		return err
	}
	if err != nil {
		return fmt.Errorf("%v; run 'junction %s --help' for the list of flags", err, command)
	}
	return nil
}

var (
	yamlUnknownKey = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	yamlWrongType  = regexp.MustCompile("^line (\\d+): cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
)

// explainYAML rewrites the YAML decoder's type errors in the operator's
// words: the key's full path, the value, and the form it should have,
// instead of Go's type names ("cannot unmarshal !!str `20ss` into
// time.Duration", "field adr not found in type main.Config").
func explainYAML(file string, raw []byte, err error) error {
	te, ok := errors.AsType[*yaml.TypeError](err)
	if !ok {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(raw, &root)
	keys, values := map[int]string{}, map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				path := prefix + k.Value
				keys[k.Line] = path
				values[v.Line] = path
				walk(v, path+".")
			}
		case yaml.SequenceNode:
			p := strings.TrimSuffix(prefix, ".")
			for i, c := range n.Content {
				values[c.Line] = p
				walk(c, p+"["+strconv.Itoa(i)+"].")
			}
		}
	}
	walk(&root, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := yamlUnknownKey.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := keys[line]
			if key == "" {
				key = m[2]
			}
			msgs = append(msgs, fmt.Sprintf("line %s: unknown key %s (run 'junction serve --help' for the keys)", m[1], key))
			continue
		}
		if m := yamlWrongType.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			key := values[line]
			if key == "" {
				key = "a value"
			}
			msgs = append(msgs, fmt.Sprintf("line %s: %s: %q is not %s", m[1], key, m[2], expectedForm(m[3])))
			continue
		}
		msgs = append(msgs, e)
	}
	return fmt.Errorf("config file %s: %s", file, strings.Join(msgs, "; "))
}

// expectedForm names, in words, what a value of a Go type looks like.
func expectedForm(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration like 30s, 5m or 1h30m"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list (- item lines, or [a, b])"
	case strings.HasPrefix(goType, "map["):
		return "a mapping of keys to values"
	}
	return "a mapping of the documented keys"
}
