// Package api is Palisade's REST contract: the JSON types requests and
// answers carry and the one error shape every endpoint answers with. The
// server (internal/server), the Go client (pkg/client), the CLI and the
// agent all use these types, so a field renamed here is renamed everywhere.
//
// Errors are always
//
//	{"error": "what is wrong", "position": 12, "field": "observations[3].tuple.srcIP"}
//
// "position" (1-based column) is set when a filter expression is at fault,
// "field" when one field of the request body or query is.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is the API's error answer. Status is the HTTP status it travels
// with (not part of the JSON).
type Error struct {
	Status   int    `json:"-"`
	Message  string `json:"error"`
	Position int    `json:"position,omitempty"`
	Field    string `json:"field,omitempty"`
	// RetryAfter is the answer's Retry-After (429, 503), when it had one.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return e.Message
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// Errorf returns an Error with the given status.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 naming the field at fault ("" when none).
func BadRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound is a 404.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, format, args...)
}

// StatusOf is the HTTP status of err: its own when it is an *Error, 0
// otherwise (a transport error, say).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsStatus reports whether err is an API answer with status code.
func IsStatus(err error, code int) bool { return StatusOf(err) == code }
