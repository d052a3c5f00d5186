package httpapi

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/palisade-dev/palisade/pkg/api"
)

// FuzzReadJSON: the request bodies of the JSON endpoints (externals,
// saved filters, tokens, credentials) decode or fail with a 4xx in the one
// error shape, never a panic.
func FuzzReadJSON(f *testing.F) {
	f.Add(0, []byte(`{"name":"psp","cidrs":["203.0.113.0/28"],"labels":{"a":"b"}}`), "application/json")
	f.Add(1, []byte(`{"name":"web","filter":"kind = pod"}`), "application/json; charset=utf-8")
	f.Add(2, []byte(`{"name":"ci","role":"viewer"}`), "application/json")
	f.Add(3, []byte(`{"username":"u","password":"p"}`), "text/plain")
	f.Add(0, []byte(`{"name":1}`), "application/json")
	f.Add(1, []byte(`{} {}`), "application/json")
	f.Fuzz(func(t *testing.T, kind int, body []byte, ct string) {
		targets := []func() any{
			func() any { return &api.External{} },
			func() any { return &api.SavedFilter{} },
			func() any { return &api.TokenRequest{} },
			func() any { return &api.Credentials{} },
		}
		v := targets[(kind%len(targets)+len(targets))%len(targets)]()
		req := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		err := ReadJSON(rec, req, v, 4096)
		if err == nil {
			return
		}
		switch s := ErrorStatus(err); s {
		case 400, 413, 415:
		default:
			t.Fatalf("status %d for %v", s, err)
		}
	})
}

// FuzzQueryInt: limit-like query parameters.
func FuzzQueryInt(f *testing.F) {
	for _, s := range []string{"", "5", "-1", "100000000", "NaN", "1e3", "0x10", "９"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := httptest.NewRequest("GET", "/x", nil)
		q := req.URL.Query()
		q.Set("limit", v)
		req.URL.RawQuery = q.Encode()
		n, err := QueryInt(req, "limit", 10, 0, 1000)
		if err == nil && (n < 0 || n > 1000) {
			t.Fatalf("%q gave %d", v, n)
		}
		if err != nil && ErrorStatus(err) != 400 {
			t.Fatalf("%q: %v", v, err)
		}
	})
}
