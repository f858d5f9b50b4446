package access

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func writeSecret(t *testing.T, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return p
}

func TestReadSecret(t *testing.T) {
	const env = "NANO_VM_TEST_ACCESS_SECRET"
	t.Setenv(env, "  from-env\n")
	for _, tc := range []struct {
		name    string
		file    func(t *testing.T) string
		env     string
		want    string
		wantErr string
	}{
		{name: "owner-only file, trailing newline trimmed", file: func(t *testing.T) string { return writeSecret(t, "s3cret-value\n", 0o600) }, want: "s3cret-value"},
		{name: "file wins over env", file: func(t *testing.T) string { return writeSecret(t, "from-file\r\n", 0o400) }, env: env, want: "from-file"},
		{name: "group-readable file allowed", file: func(t *testing.T) string { return writeSecret(t, "grp", 0o640) }, want: "grp"},
		{name: "env when no file", env: env, want: "from-env"},
		{name: "unset env is not configured", env: "NANO_VM_TEST_ACCESS_UNSET", want: ""},
		{name: "neither is not configured", want: ""},
		{name: "world-readable file refused", file: func(t *testing.T) string { return writeSecret(t, "x", 0o644) }, wantErr: "accessible to other users"},
		{name: "world-writable file refused", file: func(t *testing.T) string { return writeSecret(t, "x", 0o602) }, wantErr: "accessible to other users"},
		{name: "empty file refused", file: func(t *testing.T) string { return writeSecret(t, " \n", 0o600) }, wantErr: "is empty"},
		{name: "missing file", file: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, wantErr: "no such file"},
		{name: "directory", file: func(t *testing.T) string { return t.TempDir() }, wantErr: "directory"},
		{name: "oversize file", file: func(t *testing.T) string { return writeSecret(t, strings.Repeat("a", maxSecretBytes+1), 0o600) }, wantErr: "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && strings.Contains(tc.wantErr, "other users") {
				t.Skip("no Unix mode bits on Windows")
			}
			var file string
			if tc.file != nil {
				file = tc.file(t)
			}
			got, err := ReadSecret(file, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadSecret = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadSecret = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
