package vuln

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	bolt "go.etcd.io/bbolt"
)

// KeyFile holds the AES-256 key that encrypts registry credentials at rest
// in the database. Losing it loses the credentials, nothing else.
const KeyFile = "credentials.key"

// Registry is one registry of the image inventory. Credentials are never
// part of it: HasCredentials only says that some were set.
type Registry struct {
	Name string `json:"name"`
	// Images is how many observed images come from this registry.
	Images int `json:"images"`
	// NeedsCredentials is set while some observed image of the registry
	// could not be pulled because the registry refused every available
	// credential (admin-set, imagePullSecrets, anonymous).
	NeedsCredentials bool `json:"needsCredentials"`
	// Allowed says whether the registry is on the scan allow-list; images
	// of other registries are listed but never pulled.
	Allowed        bool      `json:"allowed"`
	HasCredentials bool      `json:"hasCredentials"`
	LastError      string    `json:"lastError,omitempty"`
	LastScan       time.Time `json:"lastScan,omitzero"`
}

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// sealer encrypts credentials with AES-GCM, the registry name as associated
// data so a sealed value cannot be moved to another registry.
type sealer struct {
	aead cipher.AEAD
}

func loadSealer(dataDir string) (*sealer, error) {
	p := filepath.Join(dataDir, KeyFile)
	key, err := os.ReadFile(p)
	if err == nil && len(key) != 32 {
		// A damaged key cannot open the sealed credentials: keep it aside
		// for inspection and start with a new one (credentials must be set
		// again; nothing else depends on the key).
		aside := fmt.Sprintf("%s.damaged.%d", p, time.Now().UnixNano())
		if err := os.Rename(p, aside); err != nil {
			return nil, fmt.Errorf("moving the damaged %s aside: %w", p, err)
		}
		slog.Warn("vuln: the registry credentials key is damaged; moved it aside and made a new one: set registry credentials again",
			"file", p, "movedTo", aside, "bytes", len(key))
		key, err = nil, os.ErrNotExist
	}
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", p, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%s: expected a 32-byte key, found %d bytes", p, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(registry string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(registry)), nil
}

func (s *sealer) open(registry string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed credential too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(registry))
}

// SetCredentials stores credentials for a registry, encrypted at rest, and
// queues the registry's images that failed for lack of them. An empty
// username and password removes the stored credentials.
func (s *Service) SetCredentials(registry, username, password string) error {
	registry = normalizeRegistry(registry)
	if registry == "" {
		return errors.New("registry name is empty")
	}
	err := s.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCredentials)
		if username == "" && password == "" {
			return b.Delete([]byte(registry))
		}
		plain, err := json.Marshal(credential{Username: username, Password: password})
		if err != nil {
			return err
		}
		sealed, err := s.sealer.seal(registry, plain)
		if err != nil {
			return err
		}
		return b.Put([]byte(registry), sealed)
	})
	if err != nil {
		return fmt.Errorf("storing credentials for %s: %w", registry, err)
	}
	s.mu.Lock()
	r := s.registryLocked(registry)
	r.HasCredentials = username != "" || password != ""
	s.persistRegistryLocked(r)
	s.requeueRegistryLocked(registry)
	s.mu.Unlock()
	return nil
}

// adminAuth returns the stored credentials of a registry.
func (s *Service) adminAuth(registry string) (authn.Authenticator, bool) {
	var sealed []byte
	_ = s.bolt.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketCredentials).Get([]byte(registry)); v != nil {
			sealed = append([]byte{}, v...)
		}
		return nil
	})
	if sealed == nil {
		return nil, false
	}
	plain, err := s.sealer.open(registry, sealed)
	if err != nil {
		s.log.Warn("stored registry credentials cannot be decrypted (was the key file replaced?)", "registry", registry, "err", err)
		return nil, false
	}
	var c credential
	if json.Unmarshal(plain, &c) != nil {
		return nil, false
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password}), true
}
