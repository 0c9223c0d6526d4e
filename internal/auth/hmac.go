package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sync"
)

// hs256Verifier checks HS256 signatures of tokens as Issue writes them with
// HMAC states kept between verifications: the library's Verify builds a
// new HMAC (two SHA-256 states and their padded keys) and copies the
// signing string for every token, about a third of a connect's
// allocations in the JWT path (BENCHMARKS.md, "Connect pass").
type hs256Verifier struct {
	pool sync.Pool // of *hs256State keyed with the verifier's key
}

// hs256State is one HMAC and its scratch space; used by one verification
// at a time.
type hs256State struct {
	mac  hash.Hash
	buf  []byte   // the signing string, then the signature's base64 (bounded by MaxTokenBytes)
	sum  [32]byte // the expected MAC
	want [32]byte // the token's signature, decoded
}

func newHS256Verifier(key []byte) *hs256Verifier {
	v := &hs256Verifier{}
	v.pool.New = func() any { return &hs256State{mac: hmac.New(sha256.New, key)} }
	return v
}

// strictRaw is the encoding of a token's segments (as the parser's
// WithStrictDecoding decodes them): base64url without padding, and only
// its canonical form, so a token cannot be altered into another string that
// still verifies.
var strictRaw = base64.RawURLEncoding.Strict()

// verify reports whether sig (base64url) is the HS256 MAC of signing.
func (v *hs256Verifier) verify(signing, sig string) bool {
	if strictRaw.DecodedLen(len(sig)) != sha256.Size {
		return false
	}
	st := v.pool.Get().(*hs256State)
	defer v.pool.Put(st)
	st.buf = append(st.buf[:0], sig...)
	n, err := strictRaw.Decode(st.want[:], st.buf)
	if err != nil || n != sha256.Size {
		return false
	}
	st.mac.Reset()
	st.buf = append(st.buf[:0], signing...)
	st.mac.Write(st.buf)
	return hmac.Equal(st.mac.Sum(st.sum[:0]), st.want[:])
}
