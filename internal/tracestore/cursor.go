package tracestore

import (
	"strconv"
	"strings"
	"time"
)

func cutCursor(c string) (ns int64, id string, ok bool) {
	a, b, found := strings.Cut(c, ":")
	if !found || b == "" {
		return 0, "", false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, b, true
}

func unixNano(ns int64) time.Time { return time.Unix(0, ns).UTC() }
