package keyring

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesOnceWithOwnerOnlyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := Open(dir, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{SigningKeyFile, SecretFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir has mode %v, want 0700", fi.Mode().Perm())
	}
	k2, err := Open(dir, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.Signing, k2.Signing) || !bytes.Equal(k1.Secret, k2.Secret) {
		t.Fatal("a second start made new keys")
	}
	k3, err := Load(dir)
	if err != nil || !bytes.Equal(k3.Public(), k1.Public()) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
}

func TestPublicKeyTextRoundTrips(t *testing.T) {
	k, _ := Open(t.TempDir(), rand.Reader)
	text := FormatPublicKey(k.Public())
	pub, err := ParsePublicKey([]byte(text))
	if err != nil || !bytes.Equal(pub, k.Public()) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "ssh-ed25519 AAAA", PublicKeyPrefix + "!!", PublicKeyPrefix + "AAAA"} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestPublicKeySpellings pins docs/receipt-format.md §1: whitespace around
// the line is ignored, and the key itself has one spelling.
func TestPublicKeySpellings(t *testing.T) {
	k, _ := Open(t.TempDir(), rand.Reader)
	line := strings.TrimSuffix(FormatPublicKey(k.Public()), "\n")
	enc := strings.TrimPrefix(line, PublicKeyPrefix)
	// The last character before "=" carries 2 padding bits, zero in the
	// canonical spelling; setting one decodes to the same key in lenient
	// base64.
	last := strings.IndexByte(base64Alphabet, enc[42])
	dirty := enc[:42] + string(base64Alphabet[last|1]) + "="
	tests := []struct {
		name string
		text string
		ok   bool
	}{
		{"as keys prints it", line + "\n", true},
		{"no newline", line, true},
		{"CRLF", line + "\r\n", true},
		{"blank lines and spaces around", "\n  " + line + " \t\n\n", true},
		{"two spaces after the prefix", strings.Replace(line, " ", "  ", 1), false},
		{"a tab after the prefix", strings.Replace(line, " ", "\t", 1), false},
		{"line break inside the key", line[:30] + "\n" + line[30:], false},
		{"padding bits set", PublicKeyPrefix + dirty, false},
		{"no padding", strings.TrimSuffix(line, "="), false},
		{"non-breaking space around", "\u00a0" + line, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, err := ParsePublicKey([]byte(tt.text))
			if tt.ok && (err != nil || !bytes.Equal(pub, k.Public())) {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("accepted %q", tt.text)
			}
		})
	}
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
