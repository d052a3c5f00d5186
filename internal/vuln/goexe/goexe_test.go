package goexe

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

func build(t *testing.T, b sample.GoAppBuild) *Info {
	t.Helper()
	data, err := sample.BuildGoApp(t.TempDir(), b)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func has(info *Info, pkg, sym string) bool {
	return slices.Contains(info.Symbols[pkg], sym)
}

// TestSymbols: the sample program's functions, inlined ones included, are
// read from an unstripped build through the symbol table and from a
// stripped build through the moduledata, with the same result.
func TestSymbols(t *testing.T) {
	full := build(t, sample.GoAppBuild{})
	stripped := build(t, sample.GoAppBuild{Strip: true})
	for _, info := range []*Info{full, stripped} {
		if info.SymbolSource != SourceModuledata {
			t.Errorf("source %q (%s), want %q", info.SymbolSource, info.SymbolError, SourceModuledata)
		}
	}
	if full.GOOS != "linux" || full.GOARCH == "" {
		t.Errorf("platform %s/%s", full.GOOS, full.GOARCH)
	}
	for _, c := range []struct{ pkg, sym string }{
		{"golang.org/x/net/html", "Parse"},
		{"golang.org/x/text/language", "ParseAcceptLanguage"},
		{"example.com/palisade/vulnapp", "main"},
		{"net/http", ""}, // not linked: the program does not import it
	} {
		if c.sym == "" {
			if _, ok := full.Symbols[c.pkg]; ok {
				t.Errorf("package %s reported but not linked", c.pkg)
			}
			continue
		}
		if !has(full, c.pkg, c.sym) {
			t.Errorf("%s.%s missing", c.pkg, c.sym)
		}
	}
	if !maps.EqualFunc(full.Symbols, stripped.Symbols, slices.Equal) {
		for p, s := range full.Symbols {
			if !slices.Equal(s, stripped.Symbols[p]) {
				t.Errorf("package %s: unstripped %d symbols, stripped %d", p, len(s), len(stripped.Symbols[p]))
			}
		}
		for p := range stripped.Symbols {
			if _, ok := full.Symbols[p]; !ok {
				t.Errorf("package %s only in the stripped build", p)
			}
		}
	}
	// Inlined functions appear: count symbols that only inline trees give.
	n := 0
	for _, s := range full.Symbols {
		n += len(s)
	}
	t.Logf("%d packages, %d symbols", len(full.Symbols), n)
}

// TestWindows: a PE build says windows and yields the same Go symbols.
func TestWindows(t *testing.T) {
	linux := build(t, sample.GoAppBuild{})
	win := build(t, sample.GoAppBuild{GOOS: "windows"})
	if win.GOOS != "windows" {
		t.Errorf("GOOS %q", win.GOOS)
	}
	if win.SymbolSource != SourceModuledata {
		t.Errorf("windows: source %q (%s)", win.SymbolSource, win.SymbolError)
	}
	for _, p := range []string{"golang.org/x/net/html", "golang.org/x/text/language"} {
		if !slices.Equal(linux.Symbols[p], win.Symbols[p]) {
			t.Errorf("%s: linux %d symbols, windows %d", p, len(linux.Symbols[p]), len(win.Symbols[p]))
		}
	}
	ws := build(t, sample.GoAppBuild{GOOS: "windows", Strip: true})
	if ws.SymbolSource != SourceModuledata || !maps.EqualFunc(win.Symbols, ws.Symbols, slices.Equal) {
		t.Errorf("stripped windows: source %q (%s), same symbols %v", ws.SymbolSource, ws.SymbolError, maps.EqualFunc(win.Symbols, ws.Symbols, slices.Equal))
	}
}

// TestGoFuncFromModuledata: on unstripped builds (ELF and PE) the
// moduledata's gofunc field equals the go:func.* symbol govulncheck uses.
func TestGoFuncFromModuledata(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		data, err := sample.BuildGoApp(t.TempDir(), sample.GoAppBuild{GOOS: goos})
		if err != nil {
			t.Fatal(err)
		}
		x, err := openExe(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		tab, addr, err := x.pclntab()
		if err != nil {
			t.Fatal(err)
		}
		pt, err := parsePclntab(tab, x.byteOrder())
		if err != nil {
			t.Fatal(err)
		}
		md, ok1 := moduledataGoFunc(x, pt, addr)
		sym, ok2 := x.symbol("go:func.*")
		if !ok1 || !ok2 || md != sym {
			t.Errorf("%s: moduledata gofunc %#x (%v), go:func.* symbol %#x (%v)", goos, md, ok1, sym, ok2)
		}
	}
}

// TestHostile: truncated and corrupted executables give errors, not panics.
func TestHostile(t *testing.T) {
	data, err := sample.BuildGoApp(t.TempDir(), sample.GoAppBuild{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 4, 64, len(data) / 3, len(data) / 2, len(data) - 1} {
		_, _ = Read(bytes.NewReader(data[:n]))
	}
	bad := bytes.Clone(data)
	for i := len(bad) / 4; i < len(bad); i += 997 {
		bad[i] ^= 0xff
	}
	_, _ = Read(bytes.NewReader(bad))
}
