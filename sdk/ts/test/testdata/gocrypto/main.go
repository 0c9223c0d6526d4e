// Command gocrypto is the Go half of the TypeScript SDK's cross-language
// crypto test (sdk/ts/test/crypto.test.mjs). It reads from stdin what the
// TypeScript SDK produced, checks it with the Go SDK (client.Open,
// client.OpenKey, ed25519), and writes to stdout what the Go SDK produces
// from the same inputs (client.Seal, client.ShareKey, ed25519.Sign) for the
// TypeScript SDK to check. All binary values are standard base64.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/crypto/curve25519"

	"github.com/junctionhq/junction/client"
)

type input struct {
	DataKey   []byte   `json:"dataKey"`
	Plains    [][]byte `json:"plains"`
	Sealed    [][]byte `json:"sealed"`    // TS seal(dataKey, plains[i])
	BoxPublic []byte   `json:"boxPublic"` // TS newBoxKey
	BoxSecret []byte   `json:"boxSecret"`
	Shared    []byte   `json:"shared"` // TS shareKey(dataKey, boxPublic)
	Seed      []byte   `json:"seed"`
	PublicKey []byte   `json:"publicKey"`
	Msg       []byte   `json:"msg"`
	Sig       []byte   `json:"sig"` // TS sign
}

type output struct {
	Sealed [][]byte `json:"sealed"` // Go Seal(dataKey, plains[i])
	Shared []byte   `json:"shared"` // Go ShareKey(dataKey, boxPublic)
	Sig    []byte   `json:"sig"`    // Go ed25519.Sign(seed, msg)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gocrypto:", err)
		os.Exit(1)
	}
}

func run() error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("decode input: %w", err)
	}
	key := (*[client.KeySize]byte)(in.DataKey)
	for i, s := range in.Sealed {
		got, err := client.Open(key, s)
		if err != nil {
			return fmt.Errorf("open TS-sealed #%d: %w", i, err)
		}
		if !bytes.Equal(got, in.Plains[i]) {
			return fmt.Errorf("open TS-sealed #%d: got %q, want %q", i, got, in.Plains[i])
		}
		if len(s) != len(in.Plains[i])+client.SealOverhead {
			return fmt.Errorf("TS-sealed #%d is %d bytes, want %d", i, len(s), len(in.Plains[i])+client.SealOverhead)
		}
	}
	pub, err := curve25519.X25519(in.BoxSecret, curve25519.Basepoint)
	if err != nil || !bytes.Equal(pub, in.BoxPublic) {
		return fmt.Errorf("box public key of the TS secret: got %x, TS says %x (%v)", pub, in.BoxPublic, err)
	}
	dk, err := client.OpenKey(in.Shared, (*[client.KeySize]byte)(in.BoxSecret))
	if err != nil {
		return fmt.Errorf("open TS-shared key: %w", err)
	}
	if !bytes.Equal(dk[:], in.DataKey) {
		return fmt.Errorf("open TS-shared key: got %x, want %x", dk[:], in.DataKey)
	}
	priv := ed25519.NewKeyFromSeed(in.Seed)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), in.PublicKey) {
		return fmt.Errorf("ed25519 public key of the seed differs")
	}
	if !ed25519.Verify(in.PublicKey, in.Msg, in.Sig) {
		return fmt.Errorf("ed25519: the TS signature does not verify")
	}
	out := output{Sig: ed25519.Sign(priv, in.Msg)}
	for _, p := range in.Plains {
		s, err := client.Seal(key, p)
		if err != nil {
			return err
		}
		out.Sealed = append(out.Sealed, s)
	}
	if out.Shared, err = client.ShareKey(key, (*[client.KeySize]byte)(in.BoxPublic)); err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}
