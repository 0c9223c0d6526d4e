package auth

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeBoth decodes b with UnmarshalJSON and with plain encoding/json
// (which applies the same field types: numericDate, claimAudience).
func decodeBoth(b []byte) (fast, slow verifyClaims, fastErr, slowErr error) {
	type plain verifyClaims
	// Called directly, as verifyIssued does: without encoding/json's own
	// validation first, so it must reject whatever encoding/json rejects.
	fastErr = fast.UnmarshalJSON(b)
	slowErr = json.Unmarshal(b, (*plain)(&slow))
	return
}

var claimsCorpus = []string{
	`{"iss":"junction","sub":"u1","exp":1795330254,"iat":1795326654,"jti":"abc","dev":"d1","kind":"phone","scope":["read","write"]}`,
	`{"iss":"junction","sub":"u1","exp":1795330254,"iat":1795326654,"jti":"abc","dev":"d1","kind":"phone","sid":"s","scope":[]}`,
	` { "sub" : "u" , "scope" : [ "read" ] , "nbf" : -5 } `,
	`{"sub":"a\u0062c","scope":["read"]}`, // escape: encoding/json
	`{"sub":"u","exp":17953302.5}`,        // fraction
	`{"sub":"u","exp":1e9}`,               // exponent
	`{"sub":"u","aud":["x"]}`,             // audience, array
	`{"sub":"u","aud":"x"}`,               // audience, one string
	`{"sub":"u","aud":[]}`,                // audience, empty: present
	`{"sub":"u","aud":null}`,              // audience, null: absent
	`{"sub":"u","aud":["x",1]}`,           // audience, wrong type
	`{"sub":"u","aud":{"x":1}}`,           // audience, wrong type
	`{"sub":"u","aud":"\u0078"}`,          // audience, escape
	`{"sub":"u","exp":"1795330254"}`,      // time as a string (issue 10)
	`{"sub":"u","iat":"1795330254"}`,      // time as a string
	`{"sub":"u","nbf":1795330254.0}`,      // fraction, even if zero
	`{"sub":"u","exp":-0}`,                // negative zero
	`{"sub":"u","exp":-9007199254740992}`, // the lower bound
	`{"sub":"u","exp":9007199254740992}`,  // the upper bound
	`{"sub":"u","iss":"j","other":1}`,     // another member
	`{"SUB":"u"}`,                         // case folding
	`{"sub":null,"scope":null}`,           // nulls
	`{"sub":"u","sub":"v"}`,               // duplicate: the last wins
	`{"sub":"u","scope":["read",1]}`,      // wrong type
	`{"sub":"u","exp":"tomorrow"}`,        // wrong type
	`{"sub":"u"`,                          // truncated
	`{"sub":"u"} x`,                       // trailing data
	`{"sub":"\xff"}`,                      // invalid UTF-8
	`{"sub":"u","exp":9007199254740993}`,  // beyond float precision
	`[]`, `null`, `{}`, ``,
}

func TestClaimsFastDecodeMatchesEncodingJSON(t *testing.T) {
	for _, in := range claimsCorpus {
		fast, slow, fe, se := decodeBoth([]byte(in))
		if (fe == nil) != (se == nil) || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s:\nfast %+v, %v\nslow %+v, %v", in, fast, fe, slow, se)
		}
	}
	var c verifyClaims
	if !c.scan([]byte(claimsCorpus[0])) || c.Subject != "u1" || len(*c.Scope) != 2 || c.Exp.Time.Unix() != 1795330254 {
		t.Fatalf("issued payload not on the fast path: %+v", c)
	}
}

func FuzzClaimsDecode(f *testing.F) {
	for _, in := range claimsCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, slow, fe, se := decodeBoth(b)
		if (fe == nil) != (se == nil) {
			t.Fatalf("%q: fast error %v, encoding/json error %v", b, fe, se)
		}
		if fe == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", b, fast, slow)
		}
	})
}

// TestClaimsDecodeStrict: times are JSON integers within ±2^53, and both
// decoders refuse anything else (issue 10: exp as a string, a fraction).
func TestClaimsDecodeStrict(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"exp":1795330254}`, true},
		{`{"exp":-5,"iat":0,"nbf":1}`, true},
		{`{"exp":9007199254740992}`, true},
		{`{"exp":9007199254740993}`, false},
		{`{"exp":-9007199254740993}`, false},
		{`{"exp":"1795330254"}`, false},
		{`{"iat":"1795330254"}`, false},
		{`{"nbf":"0"}`, false},
		{`{"exp":1795330254.5}`, false},
		{`{"exp":1795330254.0}`, false},
		{`{"exp":1e9}`, false},
		{`{"exp":true}`, false},
		{`{"exp":null}`, true},
		{`{"aud":"x"}`, true},
		{`{"aud":[]}`, true},
		{`{"aud":[1]}`, false},
		{`{"aud":1}`, false},
	} {
		fast, slow, fe, se := decodeBoth([]byte(tc.in))
		if (fe == nil) != tc.ok || (se == nil) != tc.ok {
			t.Errorf("%s: fast error %v, encoding/json error %v; want ok=%v", tc.in, fe, se, tc.ok)
		}
		if tc.ok && !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s:\nfast %+v\nslow %+v", tc.in, fast, slow)
		}
	}
}
