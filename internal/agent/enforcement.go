package agent

import (
	"context"
	"path/filepath"

	"github.com/palisade-dev/palisade/internal/agent/enforce"
)

// runEnforcement keeps the node's and its pods' rules on the server's
// bundle (when Config.Enforce is set). The last bundle is kept in the
// spool directory, so a restarted agent resumes it at once; the rules
// themselves never leave the kernel in between.
func (a *Agent) runEnforcement(ctx context.Context) {
	cfg := a.cfg
	if !cfg.Enforce {
		return
	}
	pods := cfg.PodNetNS
	if pods == nil {
		pods = &enforce.NetNSDir{Prefix: cfg.PodNetNSPrefix}
	}
	e, err := enforce.New(enforce.Config{Node: cfg.Node, NetNS: cfg.NetNS, Pods: pods,
		StateFile: filepath.Join(cfg.SpoolDir, "enforce.json"), Logger: cfg.Log})
	if err != nil {
		cfg.Log.Error("enforcement disabled", "err", err)
		return
	}
	a.enforcer.Store(e)
	if err := enforce.Follow(ctx, e, enforce.FollowConfig{Server: cfg.Server, Node: cfg.Node, Token: cfg.Token, Client: cfg.HTTPClient}); err != nil {
		cfg.Log.Error("enforcement stopped", "err", err)
	}
}

// Enforcer returns the agent's enforcer once it runs (nil before, or
// without Config.Enforce).
func (a *Agent) Enforcer() *enforce.Enforcer { return a.enforcer.Load() }
