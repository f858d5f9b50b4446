//go:build !unix

package keyring

// lockFile is a no-op where flock does not exist: processes sharing a
// data directory there must not erase at the same time.
func lockFile(string) (func(), error) { return func() {}, nil }
