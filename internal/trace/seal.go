package trace

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// KeySize is the size of subject keys and of the server secret.
const KeySize = 32

// NonceSize is the AES-GCM nonce size.
const NonceSize = 12

// SubjectID is the keyed hash under which a subject's key is stored: hex
// HMAC-SHA-256(secret, name || 0x00 || id). The id never reaches the store
// in clear, nor as an unsalted hash an attacker could confirm by guessing.
func SubjectID(secret []byte, name, id string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return Hex(m.Sum(nil))
}

// Sealed is a value encrypted under one subject's key, as it stands in an
// event in place of the plaintext: {"$sealed": {...}}.
type Sealed struct {
	Subject    string `json:"subject"`    // SubjectID of the key
	Nonce      string `json:"nonce"`      // base64 (standard, padded), 12 bytes
	Ciphertext string `json:"ciphertext"` // base64: AES-256-GCM ciphertext and tag
}

// ErrKeyDestroyed is returned when a sealed value's key no longer exists.
var ErrKeyDestroyed = errors.New("trace: the subject's key has been destroyed")

// Seal encrypts plaintext (a value's canonical JSON) under key with a nonce
// read from rand, binding it to aad (the run id).
func Seal(key []byte, subject string, plaintext, aad []byte, rand io.Reader) (*Sealed, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("trace: nonce: %w", err)
	}
	ct := aead.Seal(nil, nonce, plaintext, aad)
	return &Sealed{Subject: subject, Nonce: base64.StdEncoding.EncodeToString(nonce), Ciphertext: base64.StdEncoding.EncodeToString(ct)}, nil
}

// Open decrypts s under key.
func Open(key []byte, s *Sealed, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce, err := base64.StdEncoding.DecodeString(s.Nonce)
	if err != nil || len(nonce) != NonceSize {
		return nil, errors.New("trace: sealed value: bad nonce")
	}
	ct, err := base64.StdEncoding.DecodeString(s.Ciphertext)
	if err != nil {
		return nil, errors.New("trace: sealed value: bad ciphertext")
	}
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("trace: sealed value does not open: %w", err)
	}
	return pt, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("trace: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
