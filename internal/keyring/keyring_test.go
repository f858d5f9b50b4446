package keyring

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
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
