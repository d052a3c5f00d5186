package auth

// AgentPrincipal is a node agent authenticated by the client certificate
// the server's CA signed for node (internal/enroll): it holds the Agent
// role, and Node binds it to that node's /api/v1/agents/{node}/ routes.
func AgentPrincipal(node string) Principal {
	return Principal{Name: "agent:" + node, Role: Agent, Node: node}
}

// EnrollingPrincipal is an agent calling with an enrollment token for
// node (tokenID names the token): it may only enroll.
func EnrollingPrincipal(node, tokenID string) Principal {
	return Principal{Name: "agent:" + node, Role: Agent, Node: node, TokenID: "enroll:" + tokenID}
}
