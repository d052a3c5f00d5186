package vulntest

import (
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

// GoBinaryModules are the modules the test Go binary links, as its build
// information reports them after replacement.
var GoBinaryModules = sample.GoAppModules

// GoBinary builds a static, unstripped Go program that links
// golang.org/x/text v0.3.7 and golang.org/x/net v0.7.0, in a throwaway
// module, and returns its bytes.
func GoBinary(t testing.TB) []byte {
	t.Helper()
	data, err := sample.GoApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return data
}
