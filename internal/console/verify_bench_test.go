package console

import (
	"net/http"
	"testing"
)

// BenchmarkConsoleVerify is one uncached receipt verification of a kyc
// run: the posted page receipt, and one derived from the store.
func BenchmarkConsoleVerify(b *testing.B) {
	f := newRunsFixture(b)
	id := f.kyc(b).RunID
	env := pageReceipt(b, f.c, id)
	for _, bc := range []struct{ name, envelope string }{{"posted", env}, {"derived", ""}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.c.verified = newVerifyCache(VerifyCacheEntries, VerifyCacheTTL)
				if code, v := postVerify(b, f.c, id, bc.envelope); code != http.StatusOK || !v.Valid {
					b.Fatalf("%d %+v", code, v)
				}
			}
		})
	}
}
