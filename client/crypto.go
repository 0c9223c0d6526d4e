package client

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// End-to-end encryption helpers. The server stores sessions, messages,
// machines and artifacts as opaque bytes; these helpers produce them.
// Both formats are plain NaCl (TweetNaCl, libsodium) constructions, so a
// JavaScript or Swift client can read and write them:
//
//	Seal / Open:         nonce (24 random bytes) || secretbox(plaintext, nonce, key)
//	ShareKey / OpenKey:  ephemeral public key (32) || nonce (24) || box(dataKey, nonce, recipient, ephemeral secret)
//
// A data key (32 random bytes) encrypts an account's data with secretbox.
// It is shared with another device by boxing it to that device's X25519
// public key with a fresh ephemeral key pair, so only the recipient can
// open it and the sender needs no long-term box key.

// KeySize is the size of data keys and box keys.
const KeySize = 32

// Overheads of the formats above.
const (
	// SealOverhead is what Seal adds to the plaintext.
	SealOverhead = 24 + secretbox.Overhead
	// ShareOverhead is what ShareKey adds to the 32-byte data key.
	ShareOverhead = KeySize + 24 + box.Overhead
)

// ErrDecrypt reports ciphertext that is malformed, was made with another
// key, or was altered.
var ErrDecrypt = errors.New("client: decrypt: message forged, altered or for another key")

// NewDataKey returns a random data key for Seal and Open.
func NewDataKey() (*[KeySize]byte, error) {
	k := new([KeySize]byte)
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("client: new data key: %w", err)
	}
	return k, nil
}

// Seal encrypts and authenticates plaintext with key under a random nonce,
// which it prefixes to the result.
func Seal(key *[KeySize]byte, plaintext []byte) ([]byte, error) {
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("client: seal: nonce: %w", err)
	}
	out := make([]byte, 24, SealOverhead+len(plaintext))
	copy(out, nonce[:])
	return secretbox.Seal(out, plaintext, &nonce, key), nil
}

// Open decrypts what Seal produced with the same key.
func Open(key *[KeySize]byte, sealed []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, ErrDecrypt
	}
	var nonce [24]byte
	copy(nonce[:], sealed[:24])
	out, ok := secretbox.Open(nil, sealed[24:], &nonce, key)
	if !ok {
		return nil, ErrDecrypt
	}
	return out, nil
}

// NewBoxKey returns an X25519 key pair with which a device receives shared
// data keys. The device publishes the public key (for example in a paired
// device's encrypted metadata, or out of band while pairing) and keeps the
// private key.
func NewBoxKey() (publicKey, privateKey *[KeySize]byte, err error) {
	publicKey, privateKey, err = box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("client: new box key: %w", err)
	}
	return publicKey, privateKey, nil
}

// ShareKey encrypts dataKey to the device whose box public key is recipient.
func ShareKey(dataKey, recipient *[KeySize]byte) ([]byte, error) {
	ephPub, ephPriv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client: share key: ephemeral key: %w", err)
	}
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("client: share key: nonce: %w", err)
	}
	out := make([]byte, 0, ShareOverhead+KeySize)
	out = append(out, ephPub[:]...)
	out = append(out, nonce[:]...)
	out = box.Seal(out, dataKey[:], &nonce, recipient, ephPriv)
	clear(ephPriv[:])
	return out, nil
}

// OpenKey decrypts a data key shared with ShareKey, using the recipient's
// box private key.
func OpenKey(shared []byte, privateKey *[KeySize]byte) (*[KeySize]byte, error) {
	if len(shared) != ShareOverhead+KeySize {
		return nil, ErrDecrypt
	}
	var ephPub [KeySize]byte
	var nonce [24]byte
	copy(ephPub[:], shared[:KeySize])
	copy(nonce[:], shared[KeySize:KeySize+24])
	plain, ok := box.Open(nil, shared[KeySize+24:], &nonce, &ephPub, privateKey)
	if !ok || len(plain) != KeySize {
		return nil, ErrDecrypt
	}
	k := new([KeySize]byte)
	copy(k[:], plain)
	clear(plain)
	return k, nil
}
