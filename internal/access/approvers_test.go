package access

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func sha(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

var validApproversYAML = `# approvers of gated steps
approvers:
  - id: alice
    role: compliance_officer
    token_sha256: ` + sha("alice-token-0123456789") + `
  - id: bob.smith
    role: finance
    token_sha256: "` + strings.ToUpper(sha("bob-token-0123456789")) + `"
`

var validApproversJSON = `{
	"approvers": [
		{"id": "alice", "role": "compliance_officer", "token_sha256": "` + sha("alice-token-0123456789") + `"},
		{"id": "bob.smith", "role": "finance", "token_sha256": "` + sha("bob-token-0123456789") + `"}
	]
}`

func TestParseApproversAcceptsYAMLAndJSON(t *testing.T) {
	for name, data := range map[string]string{"approvers.yaml": validApproversYAML, "approvers.json": validApproversJSON} {
		t.Run(name, func(t *testing.T) {
			a, err := ParseApprovers(name, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if a.Len() != 2 {
				t.Fatalf("Len = %d, want 2", a.Len())
			}
			for token, want := range map[string]Approver{
				"alice-token-0123456789": {ID: "alice", Role: "compliance_officer"},
				"bob-token-0123456789":   {ID: "bob.smith", Role: "finance"},
			} {
				if got, ok := a.Lookup(token); !ok || got != want {
					t.Errorf("Lookup(%s) = %+v, %v; want %+v", token, got, ok, want)
				}
			}
			for _, token := range []string{"", "alice-token-012345678", "alice-token-0123456789 ", sha("alice-token-0123456789")} {
				if got, ok := a.Lookup(token); ok {
					t.Errorf("Lookup(%q) = %+v; want no match", token, got)
				}
			}
		})
	}
}

func TestParseApproversAcceptsExplicitEmptyList(t *testing.T) {
	a, err := ParseApprovers("a.yaml", []byte("approvers: []\n"))
	if err != nil || a.Len() != 0 {
		t.Fatalf("ParseApprovers = %v, %v; want an empty list", a, err)
	}
}

func TestLookupFindsEveryEntryNotJustTheFirstOrLast(t *testing.T) {
	var b strings.Builder
	b.WriteString("approvers:\n")
	const n = 50
	for i := range n {
		fmt.Fprintf(&b, "  - {id: user%d, role: role_%d, token_sha256: %s}\n", i, i, sha(fmt.Sprintf("token-%d", i)))
	}
	a, err := ParseApprovers("many.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		got, ok := a.Lookup(fmt.Sprintf("token-%d", i))
		want := Approver{ID: fmt.Sprintf("user%d", i), Role: fmt.Sprintf("role_%d", i)}
		if !ok || got != want {
			t.Errorf("Lookup(token-%d) = %+v, %v; want %+v", i, got, ok, want)
		}
	}
	if _, ok := a.Lookup(fmt.Sprintf("token-%d", n)); ok {
		t.Error("a token not in the file matched")
	}
}

func TestNilApproversIsEmpty(t *testing.T) {
	var a *Approvers
	if a.Len() != 0 {
		t.Error("nil Len != 0")
	}
	if _, ok := a.Lookup("anything"); ok {
		t.Error("nil Lookup matched")
	}
}

func TestParseApproversRefusesBadFiles(t *testing.T) {
	h1, h2 := sha("t1"), sha("t2")
	for _, tc := range []struct {
		name, data, wantErr string
	}{
		{"empty file", "", "a.yaml: empty"},
		{"only a comment", "# nothing\n", "a.yaml: empty"},
		{"syntax error", "approvers: [\n", "a.yaml: yaml:"},
		{"top level is a list", "- id: a\n", "a.yaml:1: top level: want a mapping"},
		{"missing approvers", "{}\n", "a.yaml:1: missing the approvers list"},
		{"unknown top-level field", "approvers: []\nextra: 1\n", `a.yaml:2: top level: unknown field "extra"`},
		{"approvers not a list", "approvers: {}\n", "a.yaml:1: approvers: want a list, got a mapping"},
		{"approvers null", "approvers:\n", "approvers: want a list, got a scalar"},
		{"entry not a mapping", "approvers:\n  - alice\n", "a.yaml:2: approvers[0]: want a mapping, got a scalar"},
		{"unknown entry field", "approvers:\n  - id: a\n    role: r\n    token_sha256: " + h1 + "\n    token: hunter2\n", `a.yaml:5: approvers[0]: unknown field "token"`},
		{"repeated field", "approvers:\n  - id: a\n    id: b\n    role: r\n    token_sha256: " + h1 + "\n", `a.yaml:3: approvers[0]: field "id" given twice (first at line 2)`},
		{"missing id", "approvers:\n  - role: r\n    token_sha256: " + h1 + "\n", "a.yaml:2: approvers[0]: missing id"},
		{"missing role", "approvers:\n  - id: a\n    token_sha256: " + h1 + "\n", "a.yaml:2: approvers[0]: missing role"},
		{"missing token hash", "approvers:\n  - id: a\n    role: r\n", "a.yaml:2: approvers[0]: missing token_sha256"},
		{"bad id", "approvers:\n  - id: Alice\n    role: r\n    token_sha256: " + h1 + "\n", `a.yaml:2: approvers[0]: id "Alice" must match`},
		{"id too long", "approvers:\n  - id: a" + strings.Repeat("b", 64) + "\n    role: r\n    token_sha256: " + h1 + "\n", "must match"},
		{"reserved id", "approvers:\n  - id: operator\n    role: r\n    token_sha256: " + h1 + "\n", `id "operator" is reserved`},
		{"numeric id", "approvers:\n  - id: 12\n    role: r\n    token_sha256: " + h1 + "\n", `approvers[0]: id: want a string, got int "12"`},
		{"null id", "approvers:\n  - id: null\n    role: r\n    token_sha256: " + h1 + "\n", "want a string, got null"},
		{"boolean id", "approvers:\n  - id: true\n    role: r\n    token_sha256: " + h1 + "\n", "want a string, got bool"},
		{"list as id", "approvers:\n  - id: [a]\n    role: r\n    token_sha256: " + h1 + "\n", "id: want a string, got a list"},
		{"bad role", "approvers:\n  - id: a\n    role: Compliance-Officer\n    token_sha256: " + h1 + "\n", `a.yaml:3: approvers[0] (id "a"): role "Compliance-Officer" must match`},
		{"empty role", "approvers:\n  - id: a\n    role: \"\"\n    token_sha256: " + h1 + "\n", "role \"\" must match"},
		{"bad hex", "approvers:\n  - id: a\n    role: r\n    token_sha256: " + strings.Repeat("zz", 32) + "\n", `a.yaml:4: approvers[0] (id "a"): token_sha256 is not hex`},
		{"short hash", "approvers:\n  - id: a\n    role: r\n    token_sha256: abcd\n", "token_sha256 must be 64 hex digits (the SHA-256 of the token), got 4"},
		{"token instead of hash", "approvers:\n  - id: a\n    role: r\n    token_sha256: alice-token-0123456789\n", "token_sha256 must be 64 hex digits"},
		{"duplicate id", "approvers:\n  - {id: a, role: r, token_sha256: " + h1 + "}\n  - {id: a, role: r, token_sha256: " + h2 + "}\n", `a.yaml:3: approvers[1]: duplicate id "a" (first at line 2)`},
		{"duplicate hash, case differs", "approvers:\n  - {id: a, role: r, token_sha256: " + h1 + "}\n  - {id: b, role: r, token_sha256: " + strings.ToUpper(h1) + "}\n", `a.yaml:3: approvers[1] (id "b"): token_sha256 is the same as approvers[0] (id "a")`},
		{"alias", "base: &b {id: a, role: r, token_sha256: " + h1 + "}\napprovers:\n  - *b\n", `top level: unknown field "base"`},
		{"alias entry", "approvers:\n  - &x {id: a, role: r, token_sha256: " + h1 + "}\n  - *x\n", "approvers[1]: YAML aliases are not allowed"},
		{"merge key", "approvers:\n  - <<: {id: a}\n    role: r\n    token_sha256: " + h1 + "\n", "a.yaml:2: approvers[0]: key: YAML merge keys are not allowed"},
		{"second document", "approvers: []\n---\napprovers: []\n", "a.yaml:2: a second YAML document"},
		{"json unknown field", `{"approvers": [{"id": "a", "role": "r", "token_sha256": "` + h1 + `", "note": "x"}]}`, `a.yaml:1: approvers[0]: unknown field "note"`},
		{"json number hash", `{"approvers": [{"id": "a", "role": "r", "token_sha256": 1}]}`, "token_sha256: want a string"},
		{"too large", "approvers: []\n" + strings.Repeat("#", maxCredFileBytes), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseApprovers("a.yaml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseApprovers = %v, %v; want error containing %q", a, err, tc.wantErr)
			}
		})
	}
}

func FuzzParseApprovers(f *testing.F) {
	for _, s := range []string{
		validApproversYAML, validApproversJSON, "", "approvers: []", "approvers:\n  - *x\n",
		"a: &a [*a]", "approvers: [{id: a, role: r, token_sha256: " + sha("x") + "}]",
		"approvers:\n  - {id: a, role: r, token_sha256: " + sha("x") + "}\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseApprovers("fuzz.yaml", data)
		if err != nil {
			if a != nil {
				t.Fatal("an error with a non-nil result")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		checkParsedSet(t, a.current())
		for _, e := range a.current().entries {
			if !approverRolePattern.MatchString(e.role) || len(e.role) > maxRoleLen {
				t.Fatalf("accepted a bad role %+v", e)
			}
			if got, ok := a.lookupHash(&e.hash); !ok || got != (Approver{ID: e.id, Role: e.role}) {
				t.Fatalf("lookup of %s's hash = %+v, %v", e.id, got, ok)
			}
		}
	})
}

func TestHasRole(t *testing.T) {
	a, err := ParseApprovers("approvers.yaml", []byte(validApproversYAML))
	if err != nil {
		t.Fatal(err)
	}
	var none *Approvers
	for _, tc := range []struct {
		a    *Approvers
		role string
		want bool
	}{
		{a, "compliance_officer", true},
		{a, "finance", true},
		{a, "support_manager", false},
		{a, "", false},
		{none, "finance", false},
	} {
		if got := tc.a.HasRole(tc.role); got != tc.want {
			t.Errorf("HasRole(%q) on %d approvers = %v, want %v", tc.role, tc.a.Len(), got, tc.want)
		}
	}
}
