package vulntest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// GoBinaryModules are the modules the test Go binary links, as its build
// information reports them after replacement.
var GoBinaryModules = map[string]string{
	"golang.org/x/text": "v0.3.7",
	"golang.org/x/net":  "v0.7.0",
}

const goBinaryMain = `package main

import (
	"fmt"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/text/language"
)

func main() {
	tags, _, err := language.ParseAcceptLanguage("en-US,fr;q=0.8")
	doc, _ := html.Parse(strings.NewReader("<p>hello</p>"))
	fmt.Println(tags, err, doc != nil)
}
`

// x/net v0.7.0 requires x/text v0.7.0, so keeping x/text at v0.3.7 (the
// version GO-2022-1059 affects) needs a replacement.
const goBinaryMod = `module example.com/palisade/vulnapp

go 1.22

require (
	golang.org/x/net v0.7.0
	golang.org/x/text v0.3.7
)

replace golang.org/x/text => golang.org/x/text v0.3.7
`

// GoBinary builds a static, unstripped Go program that links
// golang.org/x/text v0.3.7 and golang.org/x/net v0.7.0, in a throwaway
// module, and returns its bytes.
func GoBinary(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"main.go": goBinaryMain, "go.mod": goBinaryMod} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s\n(the Go module proxy must be reachable, or the modules in the module cache)", args, err, out)
		}
	}
	run("mod", "tidy")
	run("build", "-o", "vulnapp", ".")
	data, err := os.ReadFile(filepath.Join(dir, "vulnapp"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
