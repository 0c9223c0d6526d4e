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
// members, null, escapes, fractions) is decoded by encoding/json exactly as
// before; FuzzClaimsDecode checks that both agree.
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
			return scanTime(b, v, &c.ExpiresAt)
		case "iat":
			return scanTime(b, v, &c.IssuedAt)
		case "nbf":
			return scanTime(b, v, &c.NotBefore)
		case "scope":
			return scanStrings(b, v, &c.Scope)
		}
		return 0, false // "aud", a member of another case, anything else
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

// maxExactSeconds is 2^53: NumericDate decodes through a float64, exact up
// to here.
const maxExactSeconds = 1 << 53

func scanTime(b []byte, i int, dst **jwt.NumericDate) (int, bool) {
	n, end, ok := jsonscan.Int(b, i)
	if !ok || n > maxExactSeconds || n < -maxExactSeconds {
		return 0, false
	}
	*dst = jwt.NewNumericDate(time.Unix(n, 0))
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
