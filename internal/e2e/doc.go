// Package e2e holds the end-to-end acceptance tests of flow visibility
// (issue 4): a real kube-apiserver (devkube), the Palisade server, a lab
// cluster running sock-shop in network namespaces, one flow agent per lab
// node, and connections made with exact counts, checked against the flows
// the server stores and answers searches with.
//
// The tests need root, as the lab and the agents do; in CI they fail (never
// skip) without it. Every case runs in direct and in VXLAN mode, one lab per
// mode, each lab on its own API server (one lab per API server: labs share
// the sock-shop namespace), the two modes in parallel.
//
//	go test ./internal/e2e/ -v
//
// | acceptance point | test |
// | --- | --- |
// | 1 intra-node pod→pod | TestFlowAcceptance/MODE/1-intra-node-pod-to-pod |
// | 2 inter-node pod→pod (+ VXLAN tunnel flow) | TestFlowAcceptance/MODE/2-inter-node-pod-to-pod |
// | 3 pod→ClusterIP, intra- and inter-node | TestFlowAcceptance/MODE/3-clusterip-{intra,inter}-node |
// | 4 external→NodePort, local and remote endpoint | TestFlowAcceptance/MODE/4-nodeport-{local,remote} |
// | 5 pod→external | TestFlowAcceptance/MODE/5-pod-to-external |
// | 6 bytes, packets, flags, workloads and labels | TestFlowAcceptance/MODE/6-every-flow-complete |
// | 7 conversation (real 15 s) and detailed cadence | TestFlowAcceptance/MODE/7-* |
// | 8 agent killed, server down 30 s | TestFlowAcceptance/MODE/8-agent-and-server-restart |
// | 9 bad batches | TestFlowAcceptance/MODE/9-bad-input |
package e2e
