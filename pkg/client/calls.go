package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/palisade-dev/palisade/pkg/api"
)

// Status is GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var s api.Status
	err := c.get(ctx, "/api/v1/status", nil, &s)
	return s, err
}

// SearchOptions narrow an inventory search.
type SearchOptions struct {
	IncludeDeleted bool
	Limit          int    // 0: the server's default
	Saved          string // a saved filter's name instead of a filter
}

// SearchInventory is GET /api/v1/inventory.
func (c *Client) SearchInventory(ctx context.Context, filter string, o SearchOptions) (api.InventoryList, error) {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	if o.IncludeDeleted {
		q.Set("include_deleted", "true")
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Saved != "" {
		q.Set("saved", o.Saved)
	}
	var res api.InventoryList
	err := c.get(ctx, "/api/v1/inventory", q, &res)
	return res, err
}

// Workload is GET /api/v1/inventory/{id}.
func (c *Client) Workload(ctx context.Context, id string) (api.WorkloadDetail, error) {
	var res api.WorkloadDetail
	err := c.get(ctx, "/api/v1/inventory/"+id, nil, &res)
	return res, err
}

// Lookup is GET /api/v1/inventory/lookup: the workload that held ip at
// (RFC 3339; "" for now).
func (c *Client) Lookup(ctx context.Context, ip, at string) (api.Workload, error) {
	q := url.Values{"ip": {ip}}
	if at != "" {
		q.Set("at", at)
	}
	var w api.Workload
	err := c.get(ctx, "/api/v1/inventory/lookup", q, &w)
	return w, err
}

// PutExternal is POST /api/v1/external.
func (c *Client) PutExternal(ctx context.Context, e api.External) (api.Workload, error) {
	var w api.Workload
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/external", JSON: e}, &w)
	return w, err
}

// DeleteExternal is DELETE /api/v1/external/{name}.
func (c *Client) DeleteExternal(ctx context.Context, name string) error {
	return c.Do(ctx, Request{Method: http.MethodDelete, Path: "/api/v1/external/" + url.PathEscape(name)}, nil)
}

// Filters is GET /api/v1/filters.
func (c *Client) Filters(ctx context.Context) ([]api.SavedFilter, error) {
	var res []api.SavedFilter
	err := c.get(ctx, "/api/v1/filters", nil, &res)
	return res, err
}

// SaveFilter is POST /api/v1/filters.
func (c *Client) SaveFilter(ctx context.Context, f api.SavedFilter) (api.SavedFilter, error) {
	var res api.SavedFilter
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/filters", JSON: f}, &res)
	return res, err
}

// DeleteFilter is DELETE /api/v1/filters/{name}.
func (c *Client) DeleteFilter(ctx context.Context, name string) error {
	return c.Do(ctx, Request{Method: http.MethodDelete, Path: "/api/v1/filters/" + url.PathEscape(name)}, nil)
}

// FlowQuery selects flows: a filter and a time range (RFC 3339, unix
// seconds or a duration before now such as "5m").
type FlowQuery struct {
	Filter   string
	From, To string
	Limit    int
}

func (q FlowQuery) values() url.Values {
	v := url.Values{}
	if q.Filter != "" {
		v.Set("filter", q.Filter)
	}
	if q.From != "" {
		v.Set("from", q.From)
	}
	if q.To != "" {
		v.Set("to", q.To)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// SearchFlows is GET /api/v1/flows.
func (c *Client) SearchFlows(ctx context.Context, q FlowQuery) (api.FlowList, error) {
	var res api.FlowList
	err := c.get(ctx, "/api/v1/flows", q.values(), &res)
	return res, err
}

// TopFlows is GET /api/v1/flows/top: n groups by field by.
func (c *Client) TopFlows(ctx context.Context, q FlowQuery, by string, n int) (api.TopList, error) {
	v := q.values()
	v.Del("limit")
	v.Set("by", by)
	if n > 0 {
		v.Set("n", strconv.Itoa(n))
	}
	var res api.TopList
	err := c.get(ctx, "/api/v1/flows/top", v, &res)
	return res, err
}

// Flow is GET /api/v1/flows/{id}.
func (c *Client) Flow(ctx context.Context, id string) (api.FlowDetail, error) {
	var res api.FlowDetail
	err := c.get(ctx, "/api/v1/flows/"+url.PathEscape(id), nil, &res)
	return res, err
}

// Agents is GET /api/v1/agents.
func (c *Client) Agents(ctx context.Context) (api.AgentList, error) {
	var res api.AgentList
	err := c.get(ctx, "/api/v1/agents", nil, &res)
	return res, err
}

// AgentConfig is GET /api/v1/agents/{node}/config.
func (c *Client) AgentConfig(ctx context.Context, node string) (api.AgentConfig, error) {
	var res api.AgentConfig
	err := c.get(ctx, agentPath(node, "/config"), nil, &res)
	return res, err
}

// SetAgentConfig is PUT /api/v1/agents/{node}/config.
func (c *Client) SetAgentConfig(ctx context.Context, node string, cfg api.AgentConfig) (api.AgentConfig, error) {
	var res api.AgentConfig
	err := c.Do(ctx, Request{Method: http.MethodPut, Path: agentPath(node, "/config"), JSON: cfg}, &res)
	return res, err
}

// Heartbeat is POST /api/v1/agents/{node}/heartbeat; it answers the
// node's configuration.
func (c *Client) Heartbeat(ctx context.Context, node string, hb api.Heartbeat) (api.AgentConfig, error) {
	var res api.AgentConfig
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: agentPath(node, "/heartbeat"), JSON: hb}, &res)
	return res, err
}

// PostFlows is POST /api/v1/agents/{node}/flows with a gzip'd JSON
// api.Batch; it returns the answer's body (an api.IngestResponse).
func (c *Client) PostFlows(ctx context.Context, node string, gzBatch []byte) ([]byte, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Encoding", "gzip")
	return c.DoRaw(ctx, Request{Method: http.MethodPost, Path: agentPath(node, "/flows"), Body: gzBatch, Header: h})
}

func agentPath(node, suffix string) string {
	return "/api/v1/agents/" + url.PathEscape(node) + suffix
}

// FollowFlows streams the flows matching filter as the server stores them
// (GET /api/v1/flows/follow) to fn until ctx ends (nil), fn fails or the
// server closes the stream.
func (c *Client) FollowFlows(ctx context.Context, filter string, fn func(*api.Flow) error) error {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/flows/follow?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	c.authorize(req)
	// A stream has no overall deadline: only the connection's.
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return reachError(c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return decodeError(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keep-alive
		}
		var f api.Flow
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("follow: bad line from the server: %w", err)
		}
		if err := fn(&f); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	return errors.New("follow: the server closed the stream")
}

// Whoami is GET /api/v1/whoami: the caller as the server sees it.
func (c *Client) Whoami(ctx context.Context) (api.Whoami, error) {
	var res api.Whoami
	err := c.get(ctx, "/api/v1/whoami", nil, &res)
	return res, err
}

// CreateToken is POST /api/v1/tokens (admin): the answer holds the
// token's secret, shown only this once.
func (c *Client) CreateToken(ctx context.Context, name, role string) (api.NewToken, error) {
	var res api.NewToken
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/tokens", JSON: api.TokenRequest{Name: name, Role: role}}, &res)
	return res, err
}

// Tokens is GET /api/v1/tokens (admin).
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var res []api.Token
	err := c.get(ctx, "/api/v1/tokens", nil, &res)
	return res, err
}

// RevokeToken is DELETE /api/v1/tokens/{id} (admin): by ID or name.
func (c *Client) RevokeToken(ctx context.Context, idOrName string) (api.Token, error) {
	var res api.Token
	err := c.Do(ctx, Request{Method: http.MethodDelete, Path: "/api/v1/tokens/" + url.PathEscape(idOrName)}, &res)
	return res, err
}

// AuditQuery selects audit records.
type AuditQuery struct {
	Since string // RFC 3339, unix seconds or a duration before now
	Who   string
	Path  string // path prefix, e.g. /api/v1/filters
	Limit int
}

// Audit is GET /api/v1/audit (admin): the newest changes, oldest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]api.AuditRecord, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Who != "" {
		v.Set("who", q.Who)
	}
	if q.Path != "" {
		v.Set("path", q.Path)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var res []api.AuditRecord
	err := c.get(ctx, "/api/v1/audit", v, &res)
	return res, err
}
