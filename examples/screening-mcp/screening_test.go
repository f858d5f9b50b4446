package main

import (
	"encoding/json"
	"testing"
)

var allLists = []any{"UN_SC", "EU_CFSP", "UK_OFSI", "US_OFAC_SDN"}

// The canned screening is deterministic and follows the KYC program's
// gate: a listed name with the same date of birth is a confirmed match, a
// close name alone a potential one, anyone else clear; a list not asked
// for is not searched.
func TestSanctionsScreenMatchesByNameAndDateOfBirth(t *testing.T) {
	for _, c := range []struct {
		name, dob string
		lists     []any
		status    string
		matches   int
	}{
		{"Arvid Konstantin Tessmer", "1971-11-02", allLists, "confirmed_match", 2},
		{"arvid tessmer", "1971-11-02", allLists, "confirmed_match", 2},
		{"Arvid Konstantin Tessmer", "1980-01-01", allLists, "potential_match", 2},
		{"Arvid Tesmer", "1980-01-01", []any{"UK_OFSI"}, "potential_match", 1},
		{"Arvid Konstantin Tessmer", "1971-11-02", []any{"UN_SC"}, "clear", 0},
		{"Johanna Maria Lindqvist", "1988-03-14", allLists, "clear", 0},
	} {
		args := map[string]any{"full_name": c.name, "date_of_birth": c.dob, "lists": c.lists}
		got := screen(args)
		if got["status"] != c.status || len(got["matches"].([]any)) != c.matches {
			t.Errorf("%s %s %v: %v; want %s with %d matches", c.name, c.dob, c.lists, got, c.status, c.matches)
		}
		again, _ := json.Marshal(screen(args))
		if first, _ := json.Marshal(got); string(first) != string(again) {
			t.Errorf("%s: the same question answered %s, then %s", c.name, first, again)
		}
	}
}

func TestAdverseMediaReportsTheWorstSeverityInTheCategoriesAsked(t *testing.T) {
	for _, c := range []struct {
		name       string
		categories []any
		worst      string
		articles   int
	}{
		{"Viktor Emil Brandt", []any{"fraud", "corruption"}, "high", 2},
		{"Viktor Emil Brandt", []any{"corruption"}, "none", 0},
		{"Johanna Maria Lindqvist", []any{"fraud", "sanctions_evasion"}, "none", 0},
		{"Arvid Konstantin Tessmer", []any{"sanctions_evasion"}, "high", 1},
	} {
		got := search(map[string]any{"full_name": c.name, "lookback_years": 7, "categories": c.categories})
		if got["max_severity"] != c.worst || len(got["articles"].([]any)) != c.articles {
			t.Errorf("%s %v: %v; want %s with %d articles", c.name, c.categories, got, c.worst, c.articles)
		}
	}
}

func TestNameScoreIgnoresOrderCaseAndAMissingMiddleName(t *testing.T) {
	for _, c := range []struct {
		name, listed string
		want         float64
	}{
		{"Arvid Konstantin Tessmer", "TESSMER, Arvid Konstantin", 1},
		{"Arvid Konstantin Tessmer", "Arvid TESSMER", 1},
		{"Arvid Tesmer", "Arvid TESSMER", 0.93},
		{"", "Arvid TESSMER", 0},
		{"Johanna Lindqvist", "Harun AL-MASRI", 0.19},
	} {
		if got := nameScore(c.name, c.listed); got != c.want {
			t.Errorf("nameScore(%q, %q) = %v, want %v", c.name, c.listed, got, c.want)
		}
	}
}
