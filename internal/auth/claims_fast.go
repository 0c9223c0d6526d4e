package auth

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/junctionhq/junction/internal/jsonscan"
)

// UnmarshalJSON decodes a token payload as Junction issues it (only the
// members below, integer times, strings without escapes) without
// reflection: every WebSocket connect verifies a token, and decoding its
// claims with reflection was most of the cost. Anything else (other
// members, null, escapes, fractions, which numericDate then refuses) is
// decoded by encoding/json with the same field types; FuzzClaimsDecode
// checks that both agree.
func (c *verifyClaims) UnmarshalJSON(b []byte) error {
	var fast verifyClaims
	if fast.scan(b) {
		*c = fast
		return nil
	}
	type plain verifyClaims // the same fields, without this method
	return json.Unmarshal(b, (*plain)(c))
}

// scan decodes b into c when it is in the subset UnmarshalJSON handles.
func (c *verifyClaims) scan(b []byte) bool {
	end, ok := jsonscan.Object(b, jsonscan.Space(b, 0), func(key []byte, v int) (int, bool) {
		switch string(key) {
		case "iss":
			return scanString(b, v, &c.Issuer)
		case "sub":
			return scanString(b, v, &c.Subject)
		case "jti":
			return scanString(b, v, &c.ID)
		case "dev":
			return scanString(b, v, &c.Dev)
		case "kind":
			return scanString(b, v, &c.Kind)
		case "sid":
			return scanString(b, v, &c.Sid)
		case "exp":
			return scanTime(b, v, &c.Exp)
		case "iat":
			return scanTime(b, v, &c.Iat)
		case "nbf":
			return scanTime(b, v, &c.Nbf)
		case "aud":
			return scanAudience(b, v, &c.Aud)
		case "scope":
			return scanStrings(b, v, &c.Scope)
		}
		return 0, false // a member of another case, anything else
	})
	return ok && jsonscan.Space(b, end) == len(b)
}

func scanString(b []byte, i int, dst *string) (int, bool) {
	s, end, ok := jsonscan.SimpleString(b, i)
	if !ok || !utf8.Valid(s) {
		return 0, false
	}
	*dst = string(s)
	return end, true
}

// scanTime reads an integer time within ±2^53; anything else goes to
// encoding/json, where numericDate refuses it.
func scanTime(b []byte, i int, dst **numericDate) (int, bool) {
	n, end, ok := jsonscan.Int(b, i)
	if !ok || n > maxExactSeconds || n < -maxExactSeconds {
		return 0, false
	}
	d := numericDate(*jwt.NewNumericDate(time.Unix(n, 0)))
	*dst = &d
	return end, true
}

// scanAudience reads a string or an array of strings.
func scanAudience(b []byte, i int, dst **claimAudience) (int, bool) {
	if i < len(b) && b[i] == '"' {
		var s string
		end, ok := scanString(b, i, &s)
		if !ok {
			return 0, false
		}
		*dst = &claimAudience{s}
		return end, true
	}
	var list *[]string
	end, ok := scanStrings(b, i, &list)
	if !ok {
		return 0, false
	}
	a := claimAudience(*list)
	*dst = &a
	return end, true
}

func scanStrings(b []byte, i int, dst **[]string) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	list := make([]string, 0, 4)
	i = jsonscan.Space(b, i+1)
	if i < len(b) && b[i] == ']' {
		*dst = &list
		return i + 1, true
	}
	for {
		var s string
		end, ok := scanString(b, i, &s)
		if !ok {
			return 0, false
		}
		list = append(list, s)
		i = jsonscan.Space(b, end)
		switch {
		case i < len(b) && b[i] == ']':
			*dst = &list
			return i + 1, true
		case i < len(b) && b[i] == ',':
			i = jsonscan.Space(b, i+1)
		default:
			return 0, false
		}
	}
}
