package trace

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// naiveRoot is RFC 6962's MTH(D[n]) written out directly, as the reference.
func naiveRoot(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		return hasher.EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return hasher.HashChildren(naiveRoot(leaves[:k]), naiveRoot(leaves[k:]))
}

func TestTreeRootMatchesRFC6962AndSurvivesMarshalling(t *testing.T) {
	tree := NewTree()
	var leaves [][]byte
	for i := 0; i <= 70; i++ {
		root, err := tree.Root()
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveRoot(leaves); !bytes.Equal(root, want) {
			t.Fatalf("size %d: root %x, want %x", i, root, want)
		}
		state, _ := tree.MarshalBinary()
		back, err := UnmarshalTree(state)
		if err != nil {
			t.Fatalf("size %d: %v", i, err)
		}
		if r2, _ := back.Root(); !bytes.Equal(r2, root) || back.Size() != uint64(i) {
			t.Fatalf("size %d: the unmarshalled tree differs", i)
		}
		tree = back
		leaf := LeafHash([]byte(fmt.Sprintf(`{"i":%d}`, i)))
		leaves = append(leaves, leaf)
		if err := tree.Append(leaf); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2}, append(make([]byte, 8), 1)} {
		if _, err := UnmarshalTree(bad); err == nil {
			t.Errorf("malformed state %x accepted", bad)
		}
	}
}

func TestSealOpens(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	other := bytes.Repeat([]byte{8}, KeySize)
	rng := rand.NewChaCha8([32]byte{1})
	s, err := Seal(key, "subj", []byte(`"Ada Lovelace"`), []byte("run-1"), rng)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Open(key, s, []byte("run-1")); err != nil || string(pt) != `"Ada Lovelace"` {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	if _, err := Open(other, s, []byte("run-1")); err == nil {
		t.Fatal("opened under another key")
	}
	if _, err := Open(key, s, []byte("run-2")); err == nil {
		t.Fatal("opened for another run")
	}
	s2, _ := Seal(key, "subj", []byte(`"Ada Lovelace"`), []byte("run-1"), rng)
	if s2.Nonce == s.Nonce || s2.Ciphertext == s.Ciphertext {
		t.Fatal("two seals reused a nonce")
	}
}

func TestSubjectIDIsKeyed(t *testing.T) {
	a := SubjectID([]byte("secret-1"), "customer", "C-1")
	if a != SubjectID([]byte("secret-1"), "customer", "C-1") || len(a) != 64 {
		t.Fatal("not deterministic")
	}
	if a == SubjectID([]byte("secret-2"), "customer", "C-1") || a == SubjectID([]byte("secret-1"), "customer", "C-2") || a == SubjectID([]byte("secret-1"), "custome", "rC-1") {
		t.Fatal("the id does not depend on the secret, the subject and the id")
	}
}

// TestACloneAppendsWithoutChangingTheTree pins Tree.Clone: leaves appended
// to the clone leave the original's root and size as they were, whatever
// the sizes (every merge path up to 40 leaves), and the clone's root is
// the root of all the leaves.
func TestACloneAppendsWithoutChangingTheTree(t *testing.T) {
	var leaves [][]byte
	tree := NewTree()
	for n := 0; n <= 40; n++ {
		before, _ := tree.Root()
		c := tree.Clone()
		extra := append([][]byte{}, leaves...)
		for k := range 3 {
			leaf := LeafHash([]byte(fmt.Sprintf(`{"n":%d,"k":%d}`, n, k)))
			extra = append(extra, leaf)
			if err := c.Append(leaf); err != nil {
				t.Fatal(err)
			}
		}
		if after, _ := tree.Root(); !bytes.Equal(after, before) || tree.Size() != uint64(n) {
			t.Fatalf("size %d: appending to the clone changed the tree", n)
		}
		if root, _ := c.Root(); !bytes.Equal(root, naiveRoot(extra)) || c.Size() != uint64(n+3) {
			t.Fatalf("size %d: the clone's root is not the root of its leaves", n)
		}
		leaf := LeafHash([]byte(fmt.Sprintf(`{"i":%d}`, n)))
		leaves = append(leaves, leaf)
		if err := tree.Append(leaf); err != nil {
			t.Fatal(err)
		}
	}
}
