package access

import (
	"crypto/sha256"
	"strings"
	"testing"
)

const (
	ciTok     = "ci-bot-token-0123456789"
	reviewTok = "review-bot-token-0123456789"
)

var validTokensYAML = `# agents with identities of their own
agents:
  - id: ci-bot
    token_sha256: ` + sha(ciTok) + `
  - id: review.bot
    token_sha256: "` + strings.ToUpper(sha(reviewTok)) + `"
`

var validTokensJSON = `{"agents": [
	{"id": "ci-bot", "token_sha256": "` + sha(ciTok) + `"},
	{"id": "review.bot", "token_sha256": "` + sha(reviewTok) + `"}
]}`

func TestParseTokensAcceptsYAMLAndJSON(t *testing.T) {
	for name, data := range map[string]string{"tokens.yaml": validTokensYAML, "tokens.json": validTokensJSON} {
		t.Run(name, func(t *testing.T) {
			tk, err := ParseTokens(name, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if tk.Len() != 2 {
				t.Fatalf("Len = %d, want 2", tk.Len())
			}
			for token, want := range map[string]string{ciTok: "ci-bot", reviewTok: "review.bot"} {
				if got, ok := tk.Lookup(token); !ok || got != want {
					t.Errorf("Lookup(%s) = %q, %v; want %q", token, got, ok, want)
				}
			}
			for _, token := range []string{"", ciTok[1:], ciTok + " ", sha(ciTok), aliceTok} {
				if got, ok := tk.Lookup(token); ok {
					t.Errorf("Lookup(%q) = %q; want no match", token, got)
				}
			}
		})
	}
}

func TestParseTokensAcceptsExplicitEmptyList(t *testing.T) {
	tk, err := ParseTokens("t.yaml", []byte("agents: []\n"))
	if err != nil || tk == nil || tk.Len() != 0 {
		t.Fatalf("ParseTokens = %v, %v; want an empty list", tk, err)
	}
	var none *Tokens
	if _, ok := none.Lookup(ciTok); ok || none.Len() != 0 {
		t.Fatal("a nil *Tokens is not empty")
	}
}

func TestParseTokensRefusesBadFiles(t *testing.T) {
	h1, h2 := sha("t1"), sha("t2")
	entry := func(id, hash string) string { return "  - id: " + id + "\n    token_sha256: " + hash + "\n" }
	for _, tc := range []struct {
		name, data, wantErr string
	}{
		{"empty file", "", "t.yaml: empty; want a mapping with an agents list"},
		{"approvers file", validApproversYAML, `t.yaml:2: top level: unknown field "approvers" (allowed: agents)`},
		{"missing agents", "{}\n", "t.yaml:1: missing the agents list"},
		{"agents not a list", "agents: {}\n", "t.yaml:1: agents: want a list, got a mapping"},
		{"a role", "agents:\n  - id: a\n    role: r\n    token_sha256: " + h1 + "\n", `t.yaml:3: agents[0]: unknown field "role" (allowed: id, token_sha256)`},
		{"the token itself", "agents:\n  - id: a\n    token: " + ciTok + "\n", `t.yaml:3: agents[0]: unknown field "token"`},
		{"missing hash", "agents:\n  - id: a\n", "t.yaml:2: agents[0]: missing token_sha256"},
		{"bad id", "agents:\n" + entry("CI", h1), `t.yaml:2: agents[0]: id "CI" must match`},
		{"an oauth principal", "agents:\n" + entry(`"oauth:x"`, h1), `id "oauth:x" must match`},
		{"an elicitation principal", "agents:\n" + entry(`"elicitation:local"`, h1), `id "elicitation:local" must match`},
		{"operator", "agents:\n" + entry("operator", h1), `t.yaml:2: agents[0]: id "operator" is reserved`},
		{"agent", "agents:\n" + entry("agent", h1), `id "agent" is reserved`},
		{"local", "agents:\n" + entry("local", h1), `id "local" is reserved`},
		{"cli", "agents:\n" + entry("cli", h1), `id "cli" is reserved`},
		{"lab", "agents:\n" + entry("lab", h1), `id "lab" is reserved`},
		{"auditor", "agents:\n" + entry("auditor", h1), `id "auditor" is reserved`},
		{"numeric id", "agents:\n" + entry("7", h1), `agents[0]: id: want a string, got int "7"`},
		{"short hash", "agents:\n" + entry("a", "abcd"), `t.yaml:3: agents[0] (id "a"): token_sha256 must be 64 hex digits`},
		{"duplicate id", "agents:\n" + entry("a", h1) + entry("a", h2), `t.yaml:4: agents[1]: duplicate id "a" (first at line 2)`},
		{"duplicate hash", "agents:\n" + entry("a", h1) + entry("b", strings.ToUpper(h1)), `t.yaml:5: agents[1] (id "b"): token_sha256 is the same as agents[0] (id "a") at line 3`},
		{"alias", "agents:\n  - &x {id: a, token_sha256: " + h1 + "}\n  - *x\n", "agents[1]: YAML aliases are not allowed"},
		{"second document", "agents: []\n---\nagents: []\n", "t.yaml:2: a second YAML document"},
		{"too large", "agents: []\n" + strings.Repeat("#", maxCredFileBytes), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := ParseTokens("t.yaml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseTokens = %v, %v; want error containing %q", tk, err, tc.wantErr)
			}
		})
	}
}

// checkParsedSet checks what every parsed credentials file must be: valid,
// unreserved and distinct ids, distinct hashes, each found by its hash.
func checkParsedSet(t *testing.T, s *credSet) {
	t.Helper()
	ids := map[string]bool{}
	hashes := map[[sha256.Size]byte]bool{}
	for _, e := range s.entries {
		if !principalIDPattern.MatchString(e.id) {
			t.Fatalf("accepted a bad id %+v", e)
		}
		for _, r := range reservedIDs {
			if e.id == r {
				t.Fatalf("accepted a reserved id %+v", e)
			}
		}
		if ids[e.id] || hashes[e.hash] {
			t.Fatalf("accepted a duplicate %+v", e)
		}
		ids[e.id], hashes[e.hash] = true, true
		if got, ok := s.lookupHash(&e.hash); !ok || got.id != e.id {
			t.Fatalf("lookup of %s's hash = %+v, %v", e.id, got, ok)
		}
	}
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		validTokensYAML, validTokensJSON, validApproversYAML, "", "agents: []", "agents:\n  - *x\n",
		"a: &a [*a]", "agents: [{id: a, token_sha256: " + sha("x") + "}]",
		"agents: [{id: a, token_sha256: " + sha("x") + "}, {id: b, token_sha256: " + sha("x") + "}]",
		"agents:\n  - {id: a, token_sha256: " + sha("x") + "}\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := ParseTokens("fuzz.yaml", data)
		if err != nil {
			if tk != nil {
				t.Fatal("an error with a non-nil result")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		checkParsedSet(t, tk.current())
		for _, e := range tk.current().entries {
			if e.role != "" {
				t.Fatalf("an agent with a role %+v", e)
			}
			if got, ok := tk.lookupHash(&e.hash); !ok || got != e.id {
				t.Fatalf("lookup of %s's hash = %q, %v", e.id, got, ok)
			}
		}
	})
}

// testTokens parses validTokensYAML. It has no testing.TB, for the guard
// cases' config modifiers; the file is a constant, so it cannot fail.
func testTokens() *Tokens {
	tk, err := ParseTokens("tokens.yaml", []byte(validTokensYAML))
	if err != nil {
		panic(err)
	}
	return tk
}
