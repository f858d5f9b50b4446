package tracestore

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// Released schema steps never change: a store at version n was made by
// exactly the first n steps, and two binaries must agree on what they
// were. The steps the SQL stores share are assembled from common parts
// (sqlstore.go); this pins every step's text, per backend, to the text
// the release wrote. Add a step with its hash; never edit one.
func TestReleasedSchemaStepsNeverChange(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []string
		want  []string
	}{
		{"sqlite", sqliteMigrations, []string{
			"2fe711c7ed3472747d1e0e83bf536ceacd1f34c67a87f598d4e14ef96d4cd8c4",
			"c49901ff7c0a69ce43c2aa087501406c65a7f9f61a1b8e39f8ddfeaa47de7027",
			"7199d14543485040dd6b2f1bdadb2b5d7ce5dd8cf4aa23226f38f49b7592ff6c",
			"cc0c165e359cbc5a2950cf4a8835ea904d1514fbe83466a6a09895d30e7b2f50",
			"e8e6e1fcfe08d88135686e9ee987f2145b9dc0eacde66da9e8b1921a9199cf87",
			"30647b61f0ce9c4e34978c82e615e904d3bdc49a98705707c767b802811b192f",
			"f168c5e458eab01d6722b86dd5c0519ede8cafdc61c2179ed1bfb332907b1466",
			"4fd0f25a175ff0e3f3a87c2fb43c5dd582322f0882f1e0626bb9c7b51e71c90d",
			"4711ad86a1ad5961b4d4548f86dc1ce3eb767a29395b47b5a8600c3564870963",
		}},
		{"postgres", postgresMigrations, []string{
			"534e9feeb52ddeb03b75d24aac8b99b531c4ada007ea1b841541edc1b4b2ebd8",
			"c49901ff7c0a69ce43c2aa087501406c65a7f9f61a1b8e39f8ddfeaa47de7027",
			"d63046138e0cf7ebce7f0bc5ded8ccb19187c62893693c5f398fbb57bd28e694",
			"b74b57d94da52795415b395a61dd194bb662ed99ffcbe5cc514b22e0fa1d9d7a",
			"ea37e3f2fce7f0d35289a21014f86f6e76b80254987f500e26508b2307e1c466",
			"3d2b51995852a8d9457c893336ecf8769a0868cdf9d7d2eb5c84016b0cab3a2d",
			"f168c5e458eab01d6722b86dd5c0519ede8cafdc61c2179ed1bfb332907b1466",
			"4fd0f25a175ff0e3f3a87c2fb43c5dd582322f0882f1e0626bb9c7b51e71c90d",
			"4711ad86a1ad5961b4d4548f86dc1ce3eb767a29395b47b5a8600c3564870963",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if len(c.steps) != len(c.want) {
				t.Fatalf("%d schema steps, %d pinned: pin the new step's hash here", len(c.steps), len(c.want))
			}
			for i, step := range c.steps {
				sum := sha256.Sum256([]byte(step))
				if got := hex.EncodeToString(sum[:]); got != c.want[i] {
					t.Errorf("schema step %d changed (sha256 %s, released %s):\n%s", i+1, got, c.want[i], step)
				}
			}
		})
	}
}
