package service

// The proof of erasure: after EraseSubject returns, an attacker holding
// every byte of the data directory and of the database (live files, the
// SQLite WAL, PostgreSQL's relation files and WAL segments), plus what an
// older backup of the database held (the erased subject's wrapped key and
// a sealed value), cannot recover the plaintext. The attack runs first
// before the erasure, as a positive control: the same search then does
// find the key-encryption key, open the wrapped key and read the name, so
// that a clean result afterwards means the bytes are gone, not that the
// search looked in the wrong place.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The KYC example's customer's personal data, and free text elsewhere
// that quotes the customer, by the path it is at: personal data only where
// the program declares the path (the example did not, at first).
var (
	proofPII = []string{
		"CUS-88213", "Johanna M. Lindqvist", "Johanna Maria Lindqvist", "johanna.lindqvist@example.com",
		"1988-03-14", "14 MAR 1988", "Hornsgatan 112", "94117352", "LINDQVIST<<JOHANNA",
	}
	proofFreeText = map[string]string{
		"data.collect_customer_data.discrepancies": "'Johanna Maria'",
		"data.collect_customer_data.occupation":    "Senior Analyst, Nordvik",
	}
)

// proofCustomer is the example's customer made unique: a PostgreSQL
// cluster's WAL holds every database's writes, other tests' included, so
// the values searched for must be this test's own.
type proofCustomer struct {
	r        *strings.Replacer
	name     string   // as the input gives it
	pii      []string // declared personal data
	freeText map[string]string
}

func newProofCustomer(t testing.TB) proofCustomer {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	tag := hex.EncodeToString(b[:4])
	up := strings.ToUpper(tag)
	n := binary.BigEndian.Uint32(b[4:])
	year, month, day := 1901+n%49, 1+n/49%12, 1+n/588%28
	months := []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	r := strings.NewReplacer(
		"CUS-88213", "CUS-"+tag,
		"Johanna", "Johanna"+tag, "JOHANNA", "JOHANNA"+up, "johanna", "johanna"+tag,
		"Lindqvist", "Lindqvist"+tag, "LINDQVIST", "LINDQVIST"+up, "lindqvist", "lindqvist"+tag,
		"1988-03-14", fmt.Sprintf("%d-%02d-%02d", year, month, day),
		"14 MAR 1988", fmt.Sprintf("%02d %s %d", day, months[month-1], year),
		"Hornsgatan 112", "Hornsgatan "+tag,
		"94117352", fmt.Sprintf("%08d", n%100000000),
		"Nordvik", "Nordvik"+tag,
	)
	c := proofCustomer{r: r, name: r.Replace("Johanna M. Lindqvist"), freeText: map[string]string{}}
	for _, v := range proofPII {
		c.pii = append(c.pii, r.Replace(v))
	}
	for path, text := range proofFreeText {
		if proofDeclared(t, path) {
			c.pii = append(c.pii, r.Replace(text))
		} else {
			c.freeText[path] = r.Replace(text)
		}
	}
	return c
}

// proofBackend is a store kept on disk, and the attacker's view of it.
type proofBackend struct {
	name string
	// setup makes a store for the test, with dir as its data directory.
	// open connects to it (again: another process); raw reads what an
	// attacker can.
	setup func(t testing.TB, dir string) (open func() tracestore.Store, raw func(ctx context.Context) []proofFile)
}

// proofFile is bytes an attacker can read. brute: also tried window by
// window as keys (PostgreSQL's WAL segments, 16 MiB each, are only
// searched).
type proofFile struct {
	name  string
	data  []byte
	brute bool
}

var proofBackends = []proofBackend{
	{"sqlite", func(t testing.TB, dir string) (func() tracestore.Store, func(context.Context) []proofFile) {
		open := func() tracestore.Store {
			s, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open, func(context.Context) []proofFile { return proofReadDir(t, dir) }
	}},
	{"postgres", func(t testing.TB, dir string) (func() tracestore.Store, func(context.Context) []proofFile) {
		dsn, schema := proofPGDSN(t)
		open := func() tracestore.Store {
			s, err := tracestore.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open, func(ctx context.Context) []proofFile {
			return append(proofReadPostgres(ctx, t, dsn, schema), proofReadDir(t, dir)...)
		}
	}},
}

// proofReadDir reads every file under dir: for SQLite the database, its
// WAL and shared memory, and for every store the keyring's files and
// locks.
func proofReadDir(t testing.TB, dir string) []proofFile {
	t.Helper()
	var out []proofFile
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, proofFile{name: "datadir/" + rel, data: b, brute: true})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// proofReadPostgres checkpoints, so that the pages in shared buffers are in the
// files, and reads, as the superuser the tests connect as, the files of
// every relation of the test's schema (tables, indexes, TOAST) and every
// WAL segment.
func proofReadPostgres(ctx context.Context, t testing.TB, dsn, schema string) []proofFile {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil {
		t.Fatalf("CHECKPOINT (the test role must be a superuser): %v", err)
	}
	rows, err := conn.Query(ctx, `
		WITH rels AS (
			SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
		), toast AS (
			SELECT reltoastrelid AS oid FROM pg_class WHERE oid IN (SELECT oid FROM rels) AND reltoastrelid <> 0
		), toastidx AS (
			SELECT indexrelid AS oid FROM pg_index WHERE indrelid IN (SELECT oid FROM toast)
		), every AS (
			SELECT oid FROM rels UNION SELECT oid FROM toast UNION SELECT oid FROM toastidx
		)
		SELECT oid::regclass::text, pg_relation_filepath(oid) FROM every WHERE pg_relation_filepath(oid) IS NOT NULL
		UNION ALL
		SELECT 'wal ' || name, 'pg_wal/' || name FROM pg_ls_waldir()`, schema)
	if err != nil {
		t.Fatal(err)
	}
	type file struct{ name, path string }
	files, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (file, error) {
		var f file
		return f, r.Scan(&f.name, &f.path)
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []proofFile
	for _, f := range files {
		var b []byte
		// missing_ok: a WAL segment may be recycled meanwhile.
		if err := conn.QueryRow(ctx, `SELECT pg_read_binary_file($1, 0, coalesce((pg_stat_file($1, true)).size, 0), true)`, f.path).Scan(&b); err != nil {
			t.Fatalf("read %s: %v", f.path, err)
		}
		out = append(out, proofFile{name: "postgres/" + f.name, data: b, brute: !strings.HasPrefix(f.name, "wal ")})
	}
	return out
}

// proofAttack is what an attacker holds from a backup of the database
// taken before the erasure: the erased subject's wrapped key row and one
// of its sealed values. It tries every candidate key it can cut from the
// raw bytes as the key-encryption key of the wrapped key (and then opens
// the sealed value with what that yields) and as the subject key itself.
type proofAttack struct {
	wrapNonce, wrapCT, wrapAAD []byte
	sealed                     *trace.Sealed
	sealNonce, sealCT, runID   []byte
}

func newProofAttack(t testing.TB, w tracestore.WrappedKey, sealed *trace.Sealed, runID string) *proofAttack {
	t.Helper()
	// The wrapped key's form (internal/subjectkeys): nonce || AES-256-GCM,
	// bound to the subject and the epoch.
	aad := append([]byte("nano-vm-mcp subject key\x00"), w.Subject...)
	aad = binary.BigEndian.AppendUint64(append(aad, 0), w.Epoch)
	nonce, _ := base64.StdEncoding.DecodeString(sealed.Nonce)
	ct, _ := base64.StdEncoding.DecodeString(sealed.Ciphertext)
	if len(w.Wrapped) < 12+16 || len(nonce) != 12 || len(ct) < 16 {
		t.Fatalf("unexpected shapes: wrapped %d bytes, nonce %d, ciphertext %d", len(w.Wrapped), len(nonce), len(ct))
	}
	return &proofAttack{
		wrapNonce: w.Wrapped[:12], wrapCT: w.Wrapped[12:], wrapAAD: aad,
		sealed: sealed, sealNonce: nonce, sealCT: ct, runID: []byte(runID),
	}
}

// proofHit is a candidate key that opened something.
type proofHit struct {
	file   string
	offset int
	form   string // raw, base64 or hex
	as     string // "KEK" or "subject key"
	plain  string // the sealed value, when it opened
}

// try tests cand as a KEK and as the subject key.
func (a *proofAttack) try(cand []byte) (as string, plain []byte, ok bool) {
	block, err := aes.NewCipher(cand)
	if err != nil {
		return "", nil, false
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", nil, false
	}
	if key, err := gcm.Open(nil, a.wrapNonce, a.wrapCT, a.wrapAAD); err == nil {
		plain, _ := trace.Open(key, a.sealed, a.runID)
		return "KEK", plain, true
	}
	if plain, err := gcm.Open(nil, a.sealNonce, a.sealCT, a.runID); err == nil {
		return "subject key", plain, true
	}
	return "", nil, false
}

// scan tries, in every file marked brute, every 32-byte window, every
// 44-character window that is standard base64 of 32 bytes (the KEK file's
// form) and every 64-character hex window. It returns the hits and the
// number of candidates tried.
func (a *proofAttack) scan(files []proofFile) ([]proofHit, int) {
	var (
		mu    sync.Mutex
		hits  []proofHit
		tried int
		wg    sync.WaitGroup
	)
	workers := goruntime.GOMAXPROCS(0)
	for _, f := range files {
		if !f.brute || len(f.data) < 32 {
			continue
		}
		n := len(f.data) - 32 + 1
		for w := range workers {
			lo, hi := n*w/workers, n*(w+1)/workers
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []proofHit
				count := 0
				dec := make([]byte, 48)
				check := func(off int, form string, cand []byte) {
					count++
					if as, plain, ok := a.try(cand); ok {
						local = append(local, proofHit{f.name, off, form, as, string(plain)})
					}
				}
				for i := lo; i < hi; i++ {
					check(i, "raw", f.data[i:i+32])
					if i+44 <= len(f.data) && f.data[i+43] == '=' && f.data[i+42] != '=' {
						if m, err := base64.StdEncoding.Decode(dec, f.data[i:i+44]); err == nil && m == 32 {
							check(i, "base64", dec[:32])
						}
					}
					if i+64 <= len(f.data) && proofIsHex(f.data[i:i+64]) {
						if m, err := hex.Decode(dec, f.data[i:i+64]); err == nil && m == 32 {
							check(i, "hex", dec[:32])
						}
					}
				}
				mu.Lock()
				hits, tried = append(hits, local...), tried+count
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	sort.Slice(hits, func(i, j int) bool {
		return cmp.Or(strings.Compare(hits[i].file, hits[j].file), cmp.Compare(hits[i].offset, hits[j].offset)) < 0
	})
	return hits, tried
}

func proofIsHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// proofFind reports which files hold any of the byte strings, and where.
func proofFind(files []proofFile, needles map[string][]byte) map[string][]string {
	out := map[string][]string{}
	for what, n := range needles {
		for _, f := range files {
			if i := bytes.Index(f.data, n); i >= 0 {
				out[what] = append(out[what], fmt.Sprintf("%s@%d", f.name, i))
			}
		}
	}
	return out
}

// proofPIIForms are a customer's personal data, in the forms they could be
// stored in: as they are, lower case, and JSON-escaped.
func proofPIIForms(values []string) map[string][]byte {
	out := map[string][]byte{}
	for _, v := range values {
		out[v] = []byte(v)
		out[v+" (lower case)"] = []byte(strings.ToLower(v))
		j, _ := json.Marshal(v)
		out[v+" (JSON)"] = j
	}
	return out
}

// proofKeyForms are a key's usual encodings.
func proofKeyForms(key []byte) map[string][]byte {
	return map[string][]byte{
		"raw":       key,
		"base64":    []byte(base64.StdEncoding.EncodeToString(key)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(key)),
		"hex":       []byte(hex.EncodeToString(key)),
		"HEX":       []byte(strings.ToUpper(hex.EncodeToString(key))),
	}
}

// proofDriveKYC runs the KYC example's approved script for input (after
// replacing with r), or only starts it.
func proofDriveKYC(t testing.TB, svc *Service, r *strings.Replacer, whole bool) string {
	t.Helper()
	ctx := context.Background()
	a, err := svc.Start(ctx, "kyc-onboarding", js(t, r.Replace(string(mustRead(t, "kyc-onboarding.input.json")))), "officer")
	if err != nil {
		t.Fatal(err)
	}
	if !whole {
		return a.RunID
	}
	for _, line := range readLines(t, "kyc-onboarding.approved.answers.jsonl") {
		task := a.Task
		var next Answer
		switch {
		case task.Kind == "approval":
			next, err = svc.Decide(ctx, a.RunID, runtime.Decide{Seq: task.Seq, Role: task.Role, Decision: js(t, r.Replace(line))})
		case task.Tool != nil:
			next, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Tool: task.Tool.Name, Actor: runtime.ActorTool, Output: js(t, r.Replace(line))})
		default:
			next, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Output: js(t, r.Replace(line))})
		}
		if err != nil && code(err) == "" {
			t.Fatal(err)
		}
		a = next
	}
	if a.Outcome != "APPROVED" {
		t.Fatalf("outcome %q", a.Outcome)
	}
	return a.RunID
}

// proofService is a server process over the data directory and store.
func proofService(t testing.TB, dir string, store tracestore.Store) (*Service, *keyring.Keyring) {
	t.Helper()
	kr, err := keyring.Open(dir, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Options{Store: store, Secret: kr.Secret, KEKs: kr.KEKs})
	p, src := examples.MustLoad("kyc-onboarding")
	if err := svc.AddProgram(context.Background(), p, src); err != nil {
		t.Fatal(err)
	}
	return svc, kr
}

// proofSealedName is the sealed customer name in a run's stored run_started
// event.
func proofSealedName(t *testing.T, recs []tracestore.Record) *trace.Sealed {
	t.Helper()
	var e struct {
		Started struct {
			Input struct {
				Customer struct {
					Name struct {
						Sealed *trace.Sealed `json:"$sealed"`
					} `json:"name"`
				} `json:"customer"`
			} `json:"input"`
		} `json:"started"`
	}
	if err := json.Unmarshal(recs[0].Body, &e); err != nil || e.Started.Input.Customer.Name.Sealed == nil {
		t.Fatalf("the stored name is not a sealed value: %v: %s", err, recs[0].Body)
	}
	return e.Started.Input.Customer.Name.Sealed
}

func proofStartedCustomer(t *testing.T, events []runtime.Event) map[string]any {
	t.Helper()
	c, ok := events[0].Started.Input.(map[string]any)["customer"].(map[string]any)
	if !ok {
		t.Fatalf("no customer in %v", events[0].Started.Input)
	}
	return c
}

func proofReceipt(t *testing.T, recs []tracestore.Record, kr *keyring.Keyring) *receipt.Signed {
	t.Helper()
	body, err := receipt.Derive(recs, uint64(len(recs)), receipt.KeyID(kr.Public()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := receipt.Sign(body, kr.Signing)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestErasureLeavesNothingRecoverable is the proof described at the top
// of this file, for each store kept on disk.
func TestErasureLeavesNothingRecoverable(t *testing.T) {
	if testing.Short() {
		t.Skip("searches every byte of the store")
	}
	for _, be := range proofBackends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			open, raw := be.setup(t, dir)
			store := open()
			svc, kr := proofService(t, dir, store)

			// Two customers, two runs each: one whole, one still running.
			// The other customer's key must survive the re-wrap.
			cust, other := newProofCustomer(t), newProofCustomer(t)
			erased := []string{proofDriveKYC(t, svc, cust.r, true), proofDriveKYC(t, svc, cust.r, false)}
			kept := []string{proofDriveKYC(t, svc, other.r, true), proofDriveKYC(t, svc, other.r, false)}
			events, err := svc.Events(ctx, erased[0])
			if err != nil {
				t.Fatal(err)
			}
			subject := events[0].Started.Subjects["customer"]
			if name := proofStartedCustomer(t, events)["name"]; name != cust.name {
				t.Fatalf("before erasure the name reads %v", name)
			}

			// What a backup taken now holds, and the key it protects.
			wrapped, err := store.Key(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			subjectKey, err := svc.sealer.keys.Get(ctx, subject, false)
			if err != nil || subjectKey == nil {
				t.Fatalf("the subject key: %v", err)
			}
			subjectKey = bytes.Clone(subjectKey)
			recsBefore := map[string][]tracestore.Record{}
			receipts := map[string]*receipt.Signed{}
			for _, id := range append(append([]string{}, erased...), kept...) {
				if recsBefore[id], err = store.Load(ctx, id); err != nil {
					t.Fatal(err)
				}
				receipts[id] = proofReceipt(t, recsBefore[id], kr)
			}
			attack := newProofAttack(t, wrapped, proofSealedName(t, recsBefore[erased[0]]), erased[0])
			// Positive control: before the erasure the search recovers the
			// name, through the KEK file.
			files := raw(ctx)
			start := time.Now()
			hits, tried := attack.scan(files)
			t.Logf("before erasure: %d files, %d candidate keys tried in %v", len(files), tried, time.Since(start).Round(time.Millisecond))
			recovered := false
			for _, h := range hits {
				t.Logf("before erasure: %s at %s offset %d (%s) opens the wrapped key; the sealed name reads %s", h.as, h.file, h.offset, h.form, h.plain)
				recovered = recovered || h.plain == proofJSON(t, cust.name)
			}
			if !recovered {
				t.Fatal("the positive control failed: before erasure the search did not recover the name, so a clean search afterwards would prove nothing")
			}
			for what, where := range proofFind(files, proofPIIForms(append(slices.Clone(cust.pii), other.pii...))) {
				t.Errorf("before erasure, personal data %q is stored in clear at %v", what, where)
			}
			for form, where := range proofFind(files, proofKeyForms(subjectKey)) {
				t.Errorf("before erasure, the subject key (%s) is stored in clear at %v", form, where)
			}
			for _, where := range proofFind(files, map[string][]byte{"": wrapped.Wrapped}) {
				t.Logf("before erasure, the wrapped key is at %v", where)
			}

			start = time.Now()
			res, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: cust.r.Replace("CUS-88213"), Reason: "GDPR art. 17 request", Principal: "dpo"})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("EraseSubject took %v: %+v", time.Since(start).Round(time.Microsecond), res)
			if res.Status != ErasureErased || fmt.Sprint(res.Subjects) != fmt.Sprint([]string{subject}) || len(res.Runs) != 2 {
				t.Fatalf("erasure result %+v", res)
			}

			// The attack, at once: every byte of the data directory and the
			// database, now.
			files = raw(ctx)
			var size int
			for _, f := range files {
				size += len(f.data)
			}
			start = time.Now()
			hits, tried = attack.scan(files)
			t.Logf("after erasure: %d files, %d bytes, %d candidate keys tried in %v", len(files), size, tried, time.Since(start).Round(time.Millisecond))
			for _, h := range hits {
				t.Errorf("after erasure: %s at %s offset %d (%s) still opens the erased key or value: %q", h.as, h.file, h.offset, h.form, h.plain)
			}
			for what, where := range proofFind(files, proofPIIForms(cust.pii)) {
				t.Errorf("after erasure, personal data %q is stored in clear at %v", what, where)
			}
			for form, where := range proofFind(files, proofKeyForms(subjectKey)) {
				t.Errorf("after erasure, the subject key (%s) is stored at %v", form, where)
			}
			// Free text at a path the program does not declare is not
			// sealed, so erasure cannot reach it.
			for path, text := range cust.freeText {
				if where := proofFind(files, map[string][]byte{"": []byte(text)})[""]; len(where) > 0 {
					t.Logf("after erasure, %s, not declared personal data, still quotes the customer (%q) at %d places, e.g. %s", path, text, len(where), where[0])
				}
			}
			// The threat is real: the database still holds the erased key,
			// wrapped under the destroyed KEK.
			if where := proofFind(files, map[string][]byte{"": wrapped.Wrapped})[""]; len(where) > 0 {
				t.Logf("after erasure, the erased wrapped key lingers at %v: undecryptable, its KEK destroyed", where)
			} else {
				t.Logf("after erasure, the erased wrapped key is in no file")
			}

			// The other customer's data still opens, in a new process.
			store2 := open()
			svc2, _ := proofService(t, dir, store2)
			for _, id := range kept {
				evs, err := svc2.Events(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if name := proofStartedCustomer(t, evs)["name"]; name != other.name {
					t.Fatalf("the other customer's run %s reads name %v after the erasure", id, name)
				}
			}

			// Every view of the erased runs shows the marker, in this
			// process and a new one; the traces are unchanged but for the
			// subject_erased event, and the receipts signed before still
			// verify, as do new ones.
			for _, s := range []*Service{svc, svc2} {
				for _, id := range erased {
					evs, err := s.Events(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					c := proofStartedCustomer(t, evs)
					if m, ok := c["name"].(map[string]any); !ok || m[erasedKey] != subject || len(m) != 1 {
						t.Fatalf("run %s: the erased name reads %v", id, c["name"])
					}
					if c["country_of_residence"] != "SE" {
						t.Fatalf("run %s: data that is not personal was lost: %v", id, c)
					}
					recorded := false
					for _, e := range evs[len(recsBefore[id]):] {
						recorded = recorded || e.Type == runtime.EventSubjectErased && e.Erasure != nil && e.Erasure.Subject == subject
					}
					if !recorded {
						t.Fatalf("run %s records no erasure of %s", id, subject)
					}
					if view := proofJSON(t, evs); strings.Contains(view, cust.r.Replace("Lindqvist")) {
						t.Fatalf("run %s: a view still holds the name", id)
					}
				}
			}
			for id, before := range recsBefore {
				after, err := store2.Load(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				for i := range before {
					if !bytes.Equal(before[i].Body, after[i].Body) {
						t.Fatalf("run %s: event %d changed", id, i)
					}
				}
				// The erased runs grew by the erasure (and the running one
				// by its cancellation); the other customer's did not.
				rep := receipt.Verify(receipts[id], after, kr.Public())
				if grew := len(after) > len(before); !rep.Valid || rep.Later != uint64(len(after)-len(before)) || grew != slices.Contains(erased, id) {
					t.Fatalf("run %s: the receipt signed before the erasure: %+v", id, rep)
				}
				if rep := receipt.Verify(proofReceipt(t, after, kr), after, kr.Public()); !rep.Valid {
					t.Fatalf("run %s: a receipt signed after the erasure: %+v", id, rep)
				}
			}
		})
	}
}

// proofDeclared reports whether the KYC example declares path as the
// customer's personal data.
func proofDeclared(t testing.TB, path string) bool {
	for _, sub := range exampleProgram(t, "kyc-onboarding").Subjects {
		for _, q := range sub.PII {
			if sub.Name == "customer" && q.String() == path {
				return true
			}
		}
	}
	return false
}

func proofJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkEraseSubject is one EraseSubject of a customer with one run,
// in a store holding the keys of `keys` other subjects (every one of them
// re-wrapped under the new epoch, in the one transaction): the time an
// erasure takes, the fsyncs of the KEK file and the database included.
// docs/erasure.md records the results.
func BenchmarkEraseSubject(b *testing.B) {
	for _, be := range proofBackends {
		for _, keys := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/keys=%d", be.name, keys), func(b *testing.B) {
				ctx := context.Background()
				dir := b.TempDir()
				open, _ := be.setup(b, dir)
				svc, _ := proofService(b, dir, open())
				for i := range keys {
					if _, err := svc.sealer.keys.Get(ctx, fmt.Sprintf("bulk-%d", i), true); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					id := fmt.Sprintf("CUS-%08d", i)
					proofDriveKYC(b, svc, strings.NewReplacer("CUS-88213", id), false)
					b.StartTimer()
					res, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: id})
					if err != nil || res.Status != ErasureErased {
						b.Fatalf("%+v: %v", res, err)
					}
				}
			})
		}
	}
}

// proofPGDSN is a DSN for a fresh schema of its own (internal/pgtest),
// and the schema's name, whose relation files the proof reads.
func proofPGDSN(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	return pgtest.Schema(tb, "erasure_test_")
}
