// Package keyring keeps the server's own secrets in its data directory:
// the Ed25519 key that signs receipts, the secret that keys the hashes
// naming data subjects, and the key-encryption keys that wrap subject
// keys (kek.go). They are created on first use, readable by the owner
// only.
package keyring

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File names inside the data directory.
const (
	SigningKeyFile = "signing.key" // the Ed25519 seed, 32 bytes
	SecretFile     = "subject.secret"
)

// PublicKeyPrefix starts the one-line text form of a public key.
const PublicKeyPrefix = "nano-vm-mcp-ed25519 "

// Keyring is the server's signing key, subject secret and
// key-encryption keys.
type Keyring struct {
	Signing ed25519.PrivateKey
	Secret  []byte
	KEKs    *KEKs
}

// Public is the signing key's public half.
func (k *Keyring) Public() ed25519.PublicKey { return k.Signing.Public().(ed25519.PublicKey) }

// Open loads the keyring from dir, creating whatever is missing with bytes
// from rand. The directory is created 0700 and the files 0600.
func Open(dir string, rand io.Reader) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	seed, err := loadOrCreate(filepath.Join(dir, SigningKeyFile), ed25519.SeedSize, rand)
	if err != nil {
		return nil, err
	}
	secret, err := loadOrCreate(filepath.Join(dir, SecretFile), 32, rand)
	if err != nil {
		return nil, err
	}
	keks, err := OpenKEKs(dir)
	if err != nil {
		return nil, err
	}
	return &Keyring{Signing: ed25519.NewKeyFromSeed(seed), Secret: secret, KEKs: keks}, nil
}

// Ephemeral returns a keyring that lives in memory only, for stores that do
// not outlive the process.
func Ephemeral(rand io.Reader) (*Keyring, error) {
	b := make([]byte, ed25519.SeedSize+32)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return &Keyring{Signing: ed25519.NewKeyFromSeed(b[:ed25519.SeedSize]), Secret: b[ed25519.SeedSize:], KEKs: MemoryKEKs()}, nil
}

// Load reads an existing keyring without creating anything.
func Load(dir string) (*Keyring, error) {
	seed, err := readExact(filepath.Join(dir, SigningKeyFile), ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	secret, err := readExact(filepath.Join(dir, SecretFile), 32)
	if err != nil {
		return nil, err
	}
	keks, err := OpenKEKs(dir)
	if err != nil {
		return nil, err
	}
	return &Keyring{Signing: ed25519.NewKeyFromSeed(seed), Secret: secret, KEKs: keks}, nil
}

func loadOrCreate(path string, size int, rand io.Reader) ([]byte, error) {
	b, err := readExact(path, size)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	b = make([]byte, size)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	// O_EXCL: two processes starting at once must not overwrite each
	// other's key; the loser reads the winner's.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readExact(path, size)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return b, f.Close()
}

func readExact(path string, size int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("keyring: %s holds %d bytes, want %d", path, len(b), size)
	}
	return b, nil
}

// FormatPublicKey is the one-line text form `keys` prints and `verify
// --public-key` reads: the prefix, then the key in standard base64.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub) + "\n"
}

// ParsePublicKey reads the text form. Spaces, tabs, CRs and LFs around it
// are ignored (a key pasted from a mail or saved on Windows still reads);
// inside it, one spelling only: the prefix, one space, and the 44-character
// canonical base64 of 32 bytes (padding bits zero, RFC 4648 §3.5).
func ParsePublicKey(text []byte) (ed25519.PublicKey, error) {
	s := strings.Trim(string(text), " \t\r\n")
	if !strings.HasPrefix(s, PublicKeyPrefix) {
		return nil, fmt.Errorf("public key: want a line starting %q", strings.TrimSpace(PublicKeyPrefix))
	}
	enc := strings.TrimPrefix(s, PublicKeyPrefix)
	b, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || len(b) != ed25519.PublicKeySize || base64.StdEncoding.EncodeToString(b) != enc {
		return nil, errors.New("public key: not the canonical base64 of a 32-byte Ed25519 public key (44 characters, padding bits zero)")
	}
	return ed25519.PublicKey(b), nil
}
