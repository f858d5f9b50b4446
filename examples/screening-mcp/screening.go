package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"unicode"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The tools' input schemas admit exactly the arguments the KYC program
// evaluates, so that the registry's load-time check of the program's
// argument shapes has something to hold it to.
const (
	sanctionsSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["full_name", "date_of_birth", "lists"],
  "properties": {
    "full_name": {"type": "string", "minLength": 1, "maxLength": 200},
    "name_as_applied": {"type": "string", "maxLength": 200},
    "date_of_birth": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    "nationality": {"type": "string", "maxLength": 2},
    "lists": {"type": "array", "items": {"type": "string", "enum": ["UN_SC", "EU_CFSP", "UK_OFSI", "US_OFAC_SDN"]}}
  }
}`
	mediaSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["full_name", "lookback_years", "categories"],
  "properties": {
    "full_name": {"type": "string", "minLength": 1, "maxLength": 200},
    "date_of_birth": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    "country": {"type": "string", "maxLength": 2},
    "lookback_years": {"type": "integer", "minimum": 1, "maximum": 20},
    "categories": {"type": "array", "items": {"type": "string"}}
  }
}`
)

// listing is one entry of a canned sanctions list.
type listing struct {
	list, id, name, dob string
}

// listings is the canned consolidated list: fictitious people.
var listings = []listing{
	{"EU_CFSP", "EU.7719.61", "TESSMER, Arvid Konstantin", "1971-11-02"},
	{"UK_OFSI", "OFSI-17330", "Arvid TESSMER", "1971-11-02"},
	{"US_OFAC_SDN", "SDN-40213", "VOLKOV, Dmitri Sergeyevich", "1966-08-19"},
	{"UN_SC", "QDi.512", "Harun AL-MASRI", "1979-02-11"},
}

// article is one canned news item, about the person named.
type article struct {
	name, headline, source, published, category, severity string
}

var articles = []article{
	{"Viktor Emil Brandt", "Freight broker charged over fake invoices", "Dagens Industri", "2024-11-19", "fraud", "high"},
	{"Viktor Emil Brandt", "Prosecutors widen probe into freight invoicing", "Svenska Dagbladet", "2025-02-03", "fraud", "medium"},
	{"Arvid Konstantin Tessmer", "EU adds Cypriot trader to sanctions list", "Financial Mirror", "2023-06-27", "sanctions_evasion", "high"},
}

// newServer is the screening server with its two tools.
func newServer() *server.MCPServer {
	s := server.NewMCPServer("screening-mcp", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewToolWithRawSchema("sanctions_screen",
		"Screens a person against the consolidated sanctions lists (fuzzy name match, date-of-birth corroboration); reports every candidate scoring 0.5 or more.",
		json.RawMessage(sanctionsSchema)), handle(screen))
	s.AddTool(mcp.NewToolWithRawSchema("adverse_media_search",
		"Searches news and enforcement sources for a person; reports each relevant article and the most severe category found.",
		json.RawMessage(mediaSchema)), handle(search))
	return s
}

// handle adapts a pure screening function to a tool handler: the result
// is the tool's structured content.
func handle(f func(map[string]any) map[string]any) server.ToolHandlerFunc {
	return func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		args := req.GetArguments()
		if name, _ := args["full_name"].(string); strings.TrimSpace(name) == "" {
			return mcp.NewToolResultError("full_name: want a non-empty string"), nil
		}
		return mcp.NewToolResultStructuredOnly(f(args)), nil
	}
}

// screen is sanctions_screen: each listing of the requested lists whose
// name scores 0.5 or more against the full name is a match; a match of
// 0.9 or more with the same date of birth is confirmed, one of 0.75 or
// more a potential match.
func screen(args map[string]any) map[string]any {
	name, _ := args["full_name"].(string)
	dob, _ := args["date_of_birth"].(string)
	wanted := stringSet(args["lists"])
	status, matches := "clear", []any{}
	for _, l := range listings {
		if !wanted[l.list] {
			continue
		}
		score := nameScore(name, l.name)
		if score < 0.5 {
			continue
		}
		dobMatch := dob != "" && dob == l.dob
		switch {
		case score >= 0.9 && dobMatch:
			status = "confirmed_match"
		case score >= 0.75 && status == "clear":
			status = "potential_match"
		}
		matches = append(matches, map[string]any{"list": l.list, "entry_id": l.id, "listed_name": l.name, "score": score, "dob_match": dobMatch})
	}
	return map[string]any{"screening_id": "SCR-" + digest(args), "status": status, "matches": matches}
}

// severities orders an article's severity.
var severities = map[string]int{"none": 0, "low": 1, "medium": 2, "high": 3}

// search is adverse_media_search: the canned articles about the person
// (by name, the same match as screen's at 0.9) in the requested
// categories.
func search(args map[string]any) map[string]any {
	name, _ := args["full_name"].(string)
	wanted := stringSet(args["categories"])
	worst, found := "none", []any{}
	for _, a := range articles {
		if nameScore(name, a.name) < 0.9 || !wanted[a.category] {
			continue
		}
		if severities[a.severity] > severities[worst] {
			worst = a.severity
		}
		found = append(found, map[string]any{"headline": a.headline, "source": a.source, "published": a.published, "category": a.category, "severity": a.severity})
	}
	return map[string]any{"search_id": "AMS-" + digest(args), "max_severity": worst, "articles": found}
}

// stringSet is the strings of a JSON array argument.
func stringSet(v any) map[string]bool {
	set := map[string]bool{}
	items, _ := v.([]any)
	for _, it := range items {
		if s, ok := it.(string); ok {
			set[s] = true
		}
	}
	return set
}

// digest names a screening after its arguments: the same question, the
// same id.
func digest(args map[string]any) string {
	b, _ := json.Marshal(args) // map keys are sorted
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:3])
}

// tokens are a name's words, lower case, letters only, sorted.
func tokens(name string) []string {
	f := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return !unicode.IsLetter(r) })
	sort.Strings(f)
	return f
}

// nameScore is how well the listed name's words are found in the name:
// for each listed word, the best similarity (1 - edit distance / length)
// with a word of the name, averaged, to two decimals. Word order and case
// do not matter; a middle name the listing lacks costs nothing.
func nameScore(name, listed string) float64 {
	have, want := tokens(name), tokens(listed)
	if len(have) == 0 || len(want) == 0 {
		return 0
	}
	sum := 0.0
	for _, w := range want {
		best := 0.0
		for _, h := range have {
			best = math.Max(best, similarity(w, h))
		}
		sum += best
	}
	return math.Round(sum/float64(len(want))*100) / 100
}

// similarity is 1 - the Levenshtein distance over the longer length.
func similarity(a, b string) float64 {
	ra, rb := []rune(a), []rune(b)
	n := max(len(ra), len(rb))
	if n == 0 {
		return 1
	}
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return 1 - float64(prev[len(rb)])/float64(n)
}
