package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/httpapi"
)

func TestFlowsCLI(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := flow.NewService(st, nil, flow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	tu := flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", DstIP: "10.244.1.11", DstPort: 8080}
	err = svc.Ingest(context.Background(), flow.Batch{Agent: "a", Node: "node1", Observations: []flow.Observation{
		{Seq: 1, Mode: flow.ConversationMode, Point: flow.ObservationPoint{Node: "node1", Interface: "veth1", Kind: "pod"}, Tuple: tu, Start: now, End: now.Add(time.Second), FwdPackets: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc.Flush(true)
	mux := http.NewServeMux()
	if err := httpapi.Mount(mux, flowapi.Routes(svc), nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetArgs(append(args, "--server", srv.URL))
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("flows", "search", "dst.port = 8080", "--since", "5m")
	if err != nil || !strings.Contains(out, "10.244.1.11:8080") {
		t.Fatalf("search: %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])
	out, err = run("flows", "get", id[len(id)-1], "-o", "json")
	if err != nil || !strings.Contains(out, `"iface": "veth1"`) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	out, err = run("flows", "top", "--by", "dst.port")
	if err != nil || !strings.Contains(out, "8080") {
		t.Fatalf("top: %v\n%s", err, out)
	}
	if _, err = run("flows", "search", "dst.port = = 1"); err == nil || !strings.Contains(err.Error(), "^") {
		t.Fatalf("bad filter: %v", err)
	}
}
