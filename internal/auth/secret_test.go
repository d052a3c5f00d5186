package auth

import (
	"strings"
	"testing"
)

// TestParseSecret: the one parser of "<prefix><id>_<secret>" tokens takes
// what NewSecret and FormatSecret make, for either prefix, and nothing
// else.
func TestParseSecret(t *testing.T) {
	id, sec, hash, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"pal_", "pae_"} {
		tok := FormatSecret(prefix, id, sec)
		gid, gsec, ok := ParseSecret(tok, prefix)
		if !ok || gid != id || gsec != sec {
			t.Fatalf("%s: ParseSecret(%q) = %q %q %v", prefix, tok, gid, gsec, ok)
		}
		if !SecretMatches(hash, gsec) {
			t.Fatalf("%s: the secret does not match its own hash", prefix)
		}
	}
	good := FormatSecret("pal_", id, sec)
	for _, c := range []struct{ name, token string }{
		{"empty", ""},
		{"prefix only", "pal_"},
		{"other prefix", FormatSecret("pae_", id, sec)},
		{"no separator", "pal_" + id + sec},
		{"short id", "pal_" + id[1:] + "_" + sec + "A"},
		{"upper-case id", "pal_" + strings.ToUpper("abcdef0123456789") + "_" + sec},
		{"id not hex", "pal_0123456789abcdeg_" + sec},
		{"secret one short", good[:len(good)-1]},
		{"secret one long", good + "A"},
		{"secret not base64url", good[:len(good)-1] + "="},
		{"bearer kept", "Bearer " + good},
		{"space after", good + " "},
	} {
		if id, sec, ok := ParseSecret(c.token, "pal_"); ok {
			t.Errorf("%s: %q parsed as %q %q", c.name, c.token, id, sec)
		}
	}
	if SecretMatches(hash, sec+"x") || SecretMatches(hash, "") {
		t.Error("another secret matches")
	}
}
