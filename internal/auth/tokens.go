package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

// An API token is "pal_<id>_<secret>": id (16 hex digits) names the
// record, secret (256 random bits) proves possession. Only the SHA-256 of
// the secret is stored; the token itself is shown once, when created.
const tokenPrefix = "pal_"

const bucketTokens = "auth.tokens"

// Token is a stored API token, without its secret.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Scope binds the token's role to a scope and its descendants ("":
	// everywhere). Only owner, operator and viewer tokens have one.
	Scope     string     `json:"scope,omitempty"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"createdBy,omitempty"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	Hash      string     `json:"hash,omitempty"` // hex SHA-256 of the secret; never served
}

// Tokens is the token registry, kept in the store and cached in memory so
// checking a token costs no storage read.
type Tokens struct {
	kv store.KV
	mu sync.RWMutex
	by map[string]*Token // by ID
}

// OpenTokens loads the registry.
func OpenTokens(kv store.KV) (*Tokens, error) {
	t := &Tokens{kv: kv, by: map[string]*Token{}}
	err := kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketTokens, "", func(id string, v []byte) error {
			var tok Token
			if err := json.Unmarshal(v, &tok); err != nil {
				return fmt.Errorf("token %s: %w", id, err)
			}
			t.by[id] = &tok
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("auth: tokens: %w", err)
	}
	return t, nil
}

var tokenName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$`)

// Create makes a token and returns it with its secret form (shown once).
func (t *Tokens) Create(name string, role Role, by string) (Token, string, error) {
	return t.CreateScoped(name, role, "", by)
}

// ErrScopedRole: admin and metrics-reader tokens cannot be bound to a scope.
var ErrScopedRole = errors.New("only owner, operator and viewer tokens can be bound to a scope")

// CreateScoped makes a token whose role holds only on scope and its
// descendants ("" is Create). The caller checks that the scope exists.
func (t *Tokens) CreateScoped(name string, role Role, scope, by string) (Token, string, error) {
	if scope != "" && role != Owner && role != Operator && role != Viewer {
		return Token{}, "", fmt.Errorf("%w (role %s)", ErrScopedRole, role)
	}
	if !tokenName.MatchString(name) {
		return Token{}, "", fmt.Errorf("name %q: want 1-64 letters, digits, '.', '_', '@' or '-'", name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Token{}, "", err
	}
	id, sec, hash, err := NewSecret()
	if err != nil {
		return Token{}, "", err
	}
	tok := Token{ID: id, Name: name, Role: role, Scope: scope, Created: time.Now().UTC(), CreatedBy: by, Hash: hash}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.by {
		if o.Name == name && o.Revoked == nil {
			return Token{}, "", fmt.Errorf("%w: a token named %q exists (revoke it first)", ErrExists, name)
		}
	}
	if err := t.put(&tok); err != nil {
		return Token{}, "", err
	}
	t.by[tok.ID] = &tok
	return tok.public(), FormatSecret(tokenPrefix, tok.ID, sec), nil
}

// ErrExists: a live token has that name.
var ErrExists = errors.New("exists")

// ErrNoToken: no live token has that name or ID.
var ErrNoToken = errors.New("no such token")

func (t *Tokens) put(tok *Token) error {
	b, _ := json.Marshal(tok)
	return t.kv.Update(func(tx store.Tx) error { return tx.Put(bucketTokens, tok.ID, b) })
}

func (tok Token) public() Token {
	tok.Hash = ""
	return tok
}

// Errors of Check; they say what is wrong without helping a guesser.
var (
	ErrMalformed = errors.New("not a Palisade API token")
	ErrInvalid   = errors.New("unknown or revoked token")
)

// Check returns the principal of a token.
func (t *Tokens) Check(token string) (Principal, error) {
	id, sec, ok := ParseSecret(token, tokenPrefix)
	if !ok {
		return Principal{}, ErrMalformed
	}
	t.mu.RLock()
	tok := t.by[id]
	t.mu.RUnlock()
	if tok == nil {
		HashSecret(sec) // the same work as for a known ID
		return Principal{}, ErrInvalid
	}
	if !SecretMatches(tok.Hash, sec) || tok.Revoked != nil {
		return Principal{}, ErrInvalid
	}
	return Principal{Name: tok.Name, Role: tok.Role, Scope: tok.Scope, TokenID: tok.ID}, nil
}

// List returns every token (revoked ones too), oldest first, without secrets.
func (t *Tokens) List() []Token {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Token, 0, len(t.by))
	for _, tok := range t.by {
		out = append(out, tok.public())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Revoke revokes the live token with that ID or name.
func (t *Tokens) Revoke(idOrName string) (Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var hit *Token
	for _, tok := range t.by {
		if tok.Revoked == nil && (tok.ID == idOrName || tok.Name == idOrName) {
			hit = tok
			break
		}
	}
	if hit == nil {
		return Token{}, fmt.Errorf("%w: %q", ErrNoToken, idOrName)
	}
	c := *hit
	now := time.Now().UTC()
	c.Revoked = &now
	if err := t.put(&c); err != nil {
		return Token{}, err
	}
	t.by[c.ID] = &c
	return c.public(), nil
}

// Len is the number of tokens ever created.
func (t *Tokens) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.by)
}
