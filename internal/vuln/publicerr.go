package vuln

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/palisade-dev/palisade/internal/vuln/egress"
	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// inventoryError marks errors of the scanner's own parsers (package
// databases, layer bounds): their text is the scanner's.
type inventoryError struct{ err error }

func (e inventoryError) Error() string { return e.err.Error() }
func (e inventoryError) Unwrap() error { return e.err }

// distributionCodes are the error codes of the OCI distribution
// specification; other codes a registry sends are not repeated.
var distributionCodes = []string{
	"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
	"MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
	"NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}

const maxPublicError = 512

// publicError renders a scan failure for storage and the API in the
// scanner's own words: never text a remote host sent, so an image
// reference naming an internal service cannot make the server store and
// serve that service's answer. The full error goes to the server log.
func publicError(ref string, err error) string {
	msg := publicReason(err)
	if errors.Is(err, errUnauthorized) {
		msg = errUnauthorized.Error() + ": " + msg
	}
	out := "pulling " + ref + ": " + msg
	if len(out) > maxPublicError {
		out = out[:maxPublicError] + "…"
	}
	return out
}

func publicReason(err error) string {
	var refused *egress.RefusedError
	var terr *transport.Error
	var ie inventoryError
	var errno syscall.Errno
	var dns *net.DNSError
	switch {
	case errors.As(err, &refused):
		return refused.Error()
	case errors.Is(err, egress.ErrRefused):
		return egress.ErrRefused.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "the scan did not finish within its deadline"
	case errors.Is(err, context.Canceled):
		return "the scan was cancelled"
	case errors.Is(err, image.ErrDigestMismatch):
		return "a layer's content does not match its digest; nothing of it was kept"
	case errors.As(err, &ie), errors.Is(err, image.ErrLimit):
		return err.Error()
	case errors.As(err, &terr):
		var codes []string
		for _, d := range terr.Errors {
			if c := string(d.Code); slices.Contains(distributionCodes, c) && !slices.Contains(codes, c) {
				codes = append(codes, c)
			}
		}
		s := fmt.Sprintf("the registry answered HTTP %d", terr.StatusCode)
		if len(codes) > 0 {
			s += " (" + strings.Join(codes, ", ") + ")"
		}
		return s
	case errors.As(err, &errno):
		return "cannot reach the registry: " + errno.Error()
	case errors.As(err, &dns):
		return "cannot resolve the registry's host name"
	}
	// go-containerregistry refuses some of these itself, before the dial
	// check sees them: a literal private token endpoint, a redirect from a
	// registry to a private address of another kind.
	switch msg := err.Error(); {
	case strings.Contains(msg, "invalid realm in www-authenticate"):
		return "the registry named a token endpoint (realm) on a refused address: " + egress.ErrRefused.Error()
	case strings.Contains(msg, "SSRF protection: redirect"):
		return "the registry redirected to a refused address: " + egress.ErrRefused.Error()
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return "the registry did not answer in time"
	}
	return "the registry's answer could not be used (the server log has the details)"
}
