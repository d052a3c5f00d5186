// Package testutil holds helpers shared by Palisade's tests.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it holds, failing the test with
// what once within has passed. Timed assertions ("searchable within 1 s")
// are checked this way, never by sleeping.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
