package enroll

import (
	"errors"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// FuzzEnroll: whatever token and certificate request an unauthenticated
// caller sends to the enroll endpoint, the service answers with one of
// its errors (never a panic, never a certificate without the token).
func FuzzEnroll(f *testing.F) {
	kv, err := store.Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer kv.Close()
	ca, key := testCA(&testing.T{})
	s, err := Open(kv, ca, key, Options{Lifetime: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	_, secret, err := s.CreateToken("n1", 0, "admin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("pae_0011223344556677_x", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add(secret[:len(secret)-2], []byte{0x30, 0x82, 0x01, 0x00})
	f.Add("", []byte(""))
	f.Fuzz(func(t *testing.T, token string, csr []byte) {
		if token == secret {
			return
		}
		_, err := s.Enroll(token, "n1", csr)
		if err == nil {
			t.Fatalf("enrolled with token %q", token)
		}
		known := []error{ErrTokenInvalid, ErrTokenUsed, ErrTokenExpired, ErrWrongNode, ErrBadRequest}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("unexpected error kind: %v", err)
	})
}
