package client_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/junctionhq/junction/client"
)

func TestSealOpen(t *testing.T) {
	key, err := client.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := client.NewDataKey()
	plain := []byte("the quick brown fox")
	a, err := client.Seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := client.Seal(key, plain)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one plaintext are equal: nonce not random")
	}
	if len(a) != len(plain)+client.SealOverhead {
		t.Fatalf("sealed length: got %d, want %d", len(a), len(plain)+client.SealOverhead)
	}
	if bytes.Contains(a, plain) {
		t.Fatal("sealed bytes contain the plaintext")
	}
	got, err := client.Open(key, a)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open: got %q, %v; want %q", got, err, plain)
	}
	tampered := bytes.Clone(a)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		key    *[32]byte
		sealed []byte
	}{
		"other key": {other, a},
		"tampered":  {key, tampered},
		"short":     {key, a[:10]},
		"empty":     {key, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := client.Open(tc.key, tc.sealed); !errors.Is(err, client.ErrDecrypt) {
				t.Fatalf("Open: got %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestShareKey(t *testing.T) {
	dataKey, _ := client.NewDataKey()
	pub, priv, err := client.NewBoxKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := client.NewBoxKey()
	shared, err := client.ShareKey(dataKey, pub)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(shared, dataKey[:]) {
		t.Fatal("shared key contains the data key in clear")
	}
	got, err := client.OpenKey(shared, priv)
	if err != nil || *got != *dataKey {
		t.Fatalf("OpenKey: got %x, %v; want %x", got, err, dataKey)
	}
	if _, err := client.OpenKey(shared, otherPriv); !errors.Is(err, client.ErrDecrypt) {
		t.Fatalf("OpenKey with another key: got %v, want ErrDecrypt", err)
	}
	if _, err := client.OpenKey(shared[1:], priv); !errors.Is(err, client.ErrDecrypt) {
		t.Fatalf("OpenKey of a truncated key: got %v, want ErrDecrypt", err)
	}
}
