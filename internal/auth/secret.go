package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Secrets of the form "<prefix><id>_<secret>" are how Palisade hands out
// credentials: API tokens ("pal_", Tokens) and agent enrollment tokens
// ("pae_", internal/enroll). id (16 hex digits) names the stored record;
// secret (256 random bits, base64url) proves possession, and only its
// SHA-256 is stored. NewSecret, FormatSecret, ParseSecret and
// SecretMatches are the one implementation both kinds use.

// idLen and secretLen are the lengths of the two parts NewSecret makes.
const (
	idLen     = 16 // hex of 8 bytes
	secretLen = 43 // unpadded base64url of 32 bytes
)

// NewSecret makes the parts of a "<prefix><id>_<secret>" token: id (16
// hex digits), secret (256 random bits, base64url) and the hex SHA-256 of
// the secret, which is all that should be stored.
func NewSecret() (id, secret, hash string, err error) {
	idb := make([]byte, idLen/2)
	sb := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", "", err
	}
	if _, err := rand.Read(sb); err != nil {
		return "", "", "", err
	}
	secret = base64.RawURLEncoding.EncodeToString(sb)
	return hex.EncodeToString(idb), secret, HashSecret(secret), nil
}

// FormatSecret is the form of a token shown to its user (once).
func FormatSecret(prefix, id, secret string) string { return prefix + id + "_" + secret }

// ParseSecret splits a token of FormatSecret's form with prefix into its
// id and secret. ok is false when token is not of that form: another
// prefix, an id that is not 16 lower-case hex digits, or a secret that is
// not 43 base64url characters. It says nothing more, so a caller's error
// cannot help a guesser.
func ParseSecret(token, prefix string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, prefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", "", false
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", "", false
		}
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return "", "", false
		}
	}
	return id, secret, true
}

// HashSecret is the stored form of a token secret: its hex SHA-256.
func HashSecret(sec string) string {
	h := sha256.Sum256([]byte(sec))
	return hex.EncodeToString(h[:])
}

// SecretMatches reports, in constant time, whether secret is the one
// whose HashSecret is stored.
func SecretMatches(stored, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(stored), []byte(HashSecret(secret))) == 1
}
