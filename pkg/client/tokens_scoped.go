package client

import (
	"context"
	"net/http"

	"github.com/palisade-dev/palisade/pkg/api"
)

// CreateTokenFor is POST /api/v1/tokens (admin) with every field of the
// request, e.g. a token bound to a scope (api.TokenRequest.Scope).
func (c *Client) CreateTokenFor(ctx context.Context, req api.TokenRequest) (api.NewToken, error) {
	var res api.NewToken
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/tokens", JSON: req}, &res)
	return res, err
}
