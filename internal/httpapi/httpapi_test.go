package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/pkg/api"
)

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func TestMountRefusesRoutesWithoutPermission(t *testing.T) {
	for _, c := range []struct {
		name string
		rts  []Route
	}{
		{"no permission", []Route{{Method: "GET", Pattern: "/a", Handler: ok}}},
		{"malformed permission", []Route{{Method: "GET", Pattern: "/a", Perm: "read", Handler: ok}}},
		{"wildcard permission", []Route{{Method: "GET", Pattern: "/a", Perm: "inventory.*", Handler: ok}}},
		{"no handler", []Route{{Method: "GET", Pattern: "/a", Perm: auth.InventoryRead}}},
		{"no method", []Route{{Pattern: "/a", Perm: auth.InventoryRead, Handler: ok}}},
		{"twice", []Route{{Method: "GET", Pattern: "/a", Perm: auth.InventoryRead, Handler: ok}, {Method: "GET", Pattern: "/a", Perm: auth.InventoryRead, Handler: ok}}},
		{"conflict", []Route{{Method: "GET", Pattern: "/a/{x}", Perm: auth.InventoryRead, Handler: ok}, {Method: "GET", Pattern: "/a/{y}", Perm: auth.InventoryRead, Handler: ok}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := Mount(http.NewServeMux(), c.rts, nil); err == nil {
				t.Fatal("mounted")
			}
		})
	}
	mux := http.NewServeMux()
	var guarded []string
	err := Mount(mux, []Route{{Method: "GET", Pattern: "/a", Perm: auth.InventoryRead, Handler: ok}}, func(rt Route, h http.Handler) http.Handler {
		guarded = append(guarded, rt.String()+" "+string(rt.Perm))
		return h
	})
	if err != nil || len(guarded) != 1 || guarded[0] != "GET /a inventory.read" {
		t.Fatalf("mount: %v %v", err, guarded)
	}
}

func decodeErr(t *testing.T, rec *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	return e
}

func TestReadJSON(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	for _, c := range []struct {
		name, ct, body string
		status         int
		field          string
	}{
		{"ok", "application/json", `{"name":"a","count":1}`, 0, ""},
		{"charset", "application/json; charset=utf-8", `{"name":"a"}`, 0, ""},
		{"text/plain", "text/plain", `{"name":"a"}`, 415, ""},
		{"form", "application/x-www-form-urlencoded", `name=a`, 415, ""},
		{"no type", "", `{"name":"a"}`, 415, ""},
		{"empty", "application/json", ``, 400, ""},
		{"unknown field", "application/json", `{"nme":"a"}`, 400, ""},
		{"wrong type", "application/json", `{"count":"x"}`, 400, "count"},
		{"trailing", "application/json", `{"name":"a"} {}`, 400, ""},
		{"too large", "application/json", `{"name":"` + strings.Repeat("x", 2000) + `"}`, 413, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/x", strings.NewReader(c.body))
			if c.ct != "" {
				req.Header.Set("Content-Type", c.ct)
			}
			rec := httptest.NewRecorder()
			var b body
			err := ReadJSON(rec, req, &b, 1024)
			if c.status == 0 {
				if err != nil || b.Name != "a" {
					t.Fatalf("ReadJSON: %v %+v", err, b)
				}
				return
			}
			if got := ErrorStatus(err); got != c.status {
				t.Fatalf("status %d (%v), want %d", got, err, c.status)
			}
			WriteError(rec, err)
			if e := decodeErr(t, rec); rec.Code != c.status || e.Field != c.field {
				t.Fatalf("answer %d %+v", rec.Code, e)
			}
		})
	}
}

func TestWriteErrorShapes(t *testing.T) {
	_, ferr := filter.Parse("namespace = x and lable.app = y", filter.StaticSchema{Fields: []string{"namespace"}})
	for _, c := range []struct {
		name   string
		err    error
		status int
		pos    int
		hidden string
	}{
		{"api error", api.NotFound("no such thing"), 404, 0, ""},
		{"filter error", ferr, 400, 19, ""},
		{"internal", errInternal{"/var/lib/secret path"}, 500, 0, "/var/lib/secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, c.err)
			e := decodeErr(t, rec)
			if rec.Code != c.status || e.Position != c.pos {
				t.Fatalf("answer %d %+v", rec.Code, e)
			}
			if c.hidden != "" && strings.Contains(rec.Body.String(), c.hidden) {
				t.Fatalf("internal error text leaked: %s", rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
}

type errInternal struct{ s string }

func (e errInternal) Error() string { return e.s }

func TestQueryInt(t *testing.T) {
	for _, c := range []struct {
		q    string
		want int
		bad  bool
	}{
		{"", 7, false}, {"limit=5", 5, false}, {"limit=-1", 0, true}, {"limit=100000000", 0, true},
		{"limit=NaN", 0, true}, {"limit=1e3", 0, true}, {"limit=0", 0, false},
	} {
		got, err := QueryInt(httptest.NewRequest("GET", "/x?"+c.q, nil), "limit", 7, 0, 1000)
		if (err != nil) != c.bad || !c.bad && got != c.want {
			t.Errorf("%q: %d %v", c.q, got, err)
		}
		if c.bad && api.StatusOf(err) != 400 {
			t.Errorf("%q: status %d", c.q, api.StatusOf(err))
		}
	}
}
