package access

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// maxSecretBytes bounds a secret file, so a mistaken path such as /dev/zero
// fails instead of filling memory.
const maxSecretBytes = 64 << 10

// ReadSecret returns a secret from the file at path file when file is not
// empty, else from the environment variable envName (when envName is not
// empty). Surrounding white space, such as the newline editors add, is
// trimmed. An empty result means the secret is not configured.
//
// A secret file must not be accessible to other users: one readable or
// writable by "other" is refused (on Unix; Windows has no such mode bits).
// Group access is allowed, for secrets shared with a service group. An
// explicitly named file that holds nothing is an error rather than "not
// configured", so a truncated file cannot silently turn authentication off.
func ReadSecret(file, envName string) (string, error) {
	if file == "" {
		if envName == "" {
			return "", nil
		}
		return strings.TrimSpace(os.Getenv(envName)), nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("read secret: %s is a directory", file)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o007 != 0 {
		return "", fmt.Errorf("read secret: %s is accessible to other users (mode %#o); run chmod 600 %s (or 640 for a service group)", file, perm, file)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("read secret: %s is larger than %d bytes; it should hold one token", file, maxSecretBytes)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New("read secret: " + file + " is empty")
	}
	return s, nil
}
