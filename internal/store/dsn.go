package store

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DSNForms names the database addresses Open accepts, for error messages.
const DSNForms = "postgres://user:pass@host:5432/db (or postgresql://), a PostgreSQL key=value string such as \"host=db.example port=5432 user=junction dbname=junction\", sqlite:PATH, or a SQLite file path that starts with /, ./ or ../"

// pgKeywords are the libpq connection keywords that start a PostgreSQL
// key=value string (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS).
var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "connect_timeout": true, "sslmode": true, "sslcert": true, "sslkey": true,
	"sslrootcert": true, "sslpassword": true, "application_name": true, "target_session_attrs": true,
	"search_path": true, "service": true, "options": true, "client_encoding": true,
}

// dsnError is a refused database address: its message is for operators
// (no package prefix), and it matches ErrInvalid.
type dsnError struct{ msg string }

func (e *dsnError) Error() string        { return e.msg }
func (e *dsnError) Is(target error) bool { return target == ErrInvalid }

func refuse(format string, args ...any) error {
	return &dsnError{msg: fmt.Sprintf(format, args...) + "; want " + DSNForms}
}

// ParseDSN classifies a database address: "postgres" for postgres:// and
// postgresql:// URLs and PostgreSQL key=value strings, "sqlite" for
// sqlite:PATH, file:PATH and file paths that say they are paths (absolute,
// or starting with ./ or ../). Anything else is refused with an error that
// lists the accepted forms: a bare word could be a typo of either, and
// another scheme (mysql://) is not a database Junction speaks.
func ParseDSN(dsn string) (dialect string, err error) {
	s := strings.TrimSpace(dsn)
	switch {
	case s == "":
		return "", refuse("empty database address")
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return "postgres", nil
	case strings.HasPrefix(s, "sqlite:"), strings.HasPrefix(s, "file:"):
		return "sqlite", nil
	}
	if k, _, ok := strings.Cut(strings.Fields(s)[0], "="); ok {
		if pgKeywords[strings.ToLower(k)] {
			return "postgres", nil
		}
		return "", refuse("%q is not a PostgreSQL connection keyword", k)
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return "", refuse("%s:// is not a database Junction supports (PostgreSQL and SQLite only)", scheme)
	}
	if filepath.IsAbs(s) || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		(filepath.Separator == '\\' && (strings.HasPrefix(s, `.\`) || strings.HasPrefix(s, `..\`))) {
		return "sqlite", nil
	}
	return "", refuse("%q is neither a PostgreSQL address nor a SQLite path", dsn)
}
