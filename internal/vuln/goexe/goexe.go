// Package goexe reads what a Go executable says about itself: its build
// information (modules, GOOS and GOARCH) and the packages and symbols linked
// into it, inlined functions included, as govulncheck's binary mode does.
//
// Function names come from the pclntab through debug/gosym. Inlined
// functions come from each function's inline tree (FUNCDATA_InlTree), whose
// entries live in the go:func.* region: its address is the go:func.*
// symbol when the symbol table is present, and the moduledata's gofunc
// field (-s -w removes the symbol table but not the pclntab nor the
// moduledata the runtime itself needs), else the go:func.* symbol. So a
// stripped executable gives the same symbols as an unstripped one, where
// govulncheck v1.9.0 falls back to module-level precision.
//
// ELF, PE and Mach-O executables are read. Input is hostile: every offset is
// bounds-checked and Read never panics.
package goexe

import (
	"bytes"
	"debug/buildinfo"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"runtime/debug"
	"sort"
	"strings"
)

// Symbol sources, in Info.SymbolSource.
const (
	// SourceModuledata: function names from the pclntab, inline trees
	// located through the moduledata's gofunc field (stripped or not).
	SourceModuledata = "pclntab+moduledata"
	// SourceSymtab: inline trees located through the go:func.* symbol,
	// when no moduledata was recognised (an unstripped executable).
	SourceSymtab = "pclntab+symtab"
	// SourcePclntabNoInline: the go:func.* region could not be located, so
	// inlined functions are missing (reachability may be under-reported).
	SourcePclntabNoInline = "pclntab-no-inline"
)

// Info is what an executable says about itself.
type Info struct {
	BuildInfo *debug.BuildInfo
	// GOOS and GOARCH come from the build settings, else from the
	// executable format (PE: windows, Mach-O: darwin).
	GOOS, GOARCH string
	// Symbols maps each package path to the sorted names of its functions
	// in the executable, as govulncheck names them: "F", "T.M" (pointer
	// receivers without the star). Nil when no pclntab was found.
	Symbols map[string][]string
	// SymbolSource says how Symbols were read ("" when not read).
	SymbolSource string
	// SymbolError says why Symbols is nil when a pclntab was expected.
	SymbolError string
}

// maxFuncs bounds the function count a pclntab may declare.
const maxFuncs = 4 << 20

// Read reads the build information and symbols of a Go executable. It
// returns an error for executables that are not Go programs with module
// information; a Go program whose symbols cannot be read is returned with
// Symbols nil and SymbolError set.
func Read(r io.ReaderAt) (info *Info, err error) {
	defer func() {
		if v := recover(); v != nil {
			info, err = nil, fmt.Errorf("malformed executable: %v", v)
		}
	}()
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, err
	}
	info = &Info{BuildInfo: bi}
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOOS":
			info.GOOS = s.Value
		case "GOARCH":
			info.GOARCH = s.Value
		}
	}
	x, err := openExe(r)
	if err != nil {
		info.SymbolError = err.Error()
		return info, nil
	}
	if info.GOOS == "" {
		info.GOOS = x.goos()
	}
	syms, src, err := readSymbols(x)
	if err != nil {
		info.SymbolError = err.Error()
		return info, nil
	}
	// The main package's symbols are named "main."; advisories name it by
	// its import path.
	if m, ok := syms["main"]; ok && bi.Path != "" && bi.Path != "main" {
		delete(syms, "main")
		syms[bi.Path] = append(syms[bi.Path], m...)
	}
	for p, s := range syms {
		sort.Strings(s)
		syms[p] = compact(s)
	}
	info.Symbols, info.SymbolSource = syms, src
	return info, nil
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// readSymbols lists the functions of the pclntab and of every inline tree.
// Names are collected by their offset in the function name table first
// (inlined functions repeat across their callers), then each distinct name
// is split once with debug/gosym's rules.
func readSymbols(x exe) (map[string][]string, string, error) {
	tabData, tabAddr, err := x.pclntab()
	if err != nil {
		return nil, "", err
	}
	pt, err := parsePclntab(tabData, x.byteOrder())
	if err != nil {
		return nil, "", err
	}
	offs := make(map[uint32]struct{}, pt.nfunc)
	for i := 0; i < pt.nfunc; i++ {
		off, err := pt.nameOff(i)
		if err != nil {
			return nil, "", fmt.Errorf("function %d: %w", i, err)
		}
		offs[off] = struct{}{}
	}
	src := SourcePclntabNoInline
	if gofunc, how, ok := goFuncAddr(x, pt, tabAddr); ok {
		src = how
		read := func(off uint64, n int) ([]byte, error) { return x.readVA(gofunc+off, n) }
		for i := 0; i < pt.nfunc; i++ {
			if err := pt.inlined(i, read, offs); err != nil {
				return nil, "", fmt.Errorf("inline tree of function %d: %w", i, err)
			}
		}
	}
	syms := map[string][]string{}
	for off := range offs {
		name, err := pt.name(off)
		if err != nil {
			return nil, "", err
		}
		pkg, sym := parseName(&gosym.Sym{Name: name})
		if pkg != "" || sym != "" {
			syms[pkg] = append(syms[pkg], sym)
		}
	}
	if len(syms) == 0 {
		return nil, "", errors.New("pclntab lists no functions")
	}
	return syms, src, nil
}

// goFuncAddr finds the go:func.* address: the moduledata's gofunc field
// (present in stripped and unstripped executables alike, and cheaper to find
// than reading the whole symbol table), else the go:func.* symbol.
func goFuncAddr(x exe, pt *pclntab, tabAddr uint64) (uint64, string, bool) {
	if tabAddr != 0 {
		if a, ok := moduledataGoFunc(x, pt, tabAddr); ok {
			return a, SourceModuledata, true
		}
	}
	name := "go:func.*"
	if pt.version == ver118 {
		name = "go.func.*"
	}
	if a, ok := x.symbol(name); ok {
		return a, SourceSymtab, true
	}
	return 0, "", false
}

// moduledataGoFunc scans the data sections for runtime.firstmoduledata: a
// pointer to the pclntab header followed by the funcnametab slice (whose
// data follows the header). gofunc is a fixed number of words after text
// (runtime/symtab.go, Go 1.18 to 1.26).
func moduledataGoFunc(x exe, pt *pclntab, tabAddr uint64) (uint64, bool) {
	ps := pt.ptrSize
	word := func(b []byte, i int) uint64 {
		if ps == 8 {
			return pt.bo.Uint64(b[i*8:])
		}
		return uint64(pt.bo.Uint32(b[i*4:]))
	}
	const textWord = 22 // pcHeader, 6 slices of 3 words, findfunctab, minpc, maxpc
	gofuncWord := textWord + 18
	if pt.version == ver118 {
		gofuncWord = textWord + 16 // before covctrs, ecovctrs (Go 1.20)
	}
	need := (gofuncWord + 1) * ps
	for _, d := range x.dataSections() {
		for off := 0; off+need <= len(d); off += ps {
			if word(d[off:], 0) != tabAddr {
				continue
			}
			m := d[off:]
			if word(m, 1) != tabAddr+pt.funcnameOffset || word(m, textWord) == 0 {
				continue
			}
			if g := word(m, gofuncWord); g != 0 {
				return g, true
			}
		}
	}
	return 0, false
}

// parseName splits a function symbol as govulncheck does: package path
// (unescaped) and "F" or "T.M".
func parseName(s *gosym.Sym) (pkg, sym string) {
	sym = s.BaseName()
	if r := s.ReceiverName(); r != "" {
		if strings.HasPrefix(r, "(*") {
			r = strings.Trim(r, "(*)")
		}
		sym = r + "." + sym
	}
	pkg = s.PackageName()
	if pkg != "" {
		if u, err := url.PathUnescape(pkg); err == nil {
			pkg = u
		}
	}
	return pkg, sym
}

// Pclntab versions (the header magic).
const (
	ver118 = 118 // 0xfffffff0: Go 1.18, 1.19
	ver120 = 120 // 0xfffffff1: Go 1.20 and later
)

// pclntab is the part of the Go 1.18+ pclntab the inline trees need
// (runtime/symtab.go pcHeader, _func; cmd/internal/objabi funcdata.go).
type pclntab struct {
	data           []byte
	bo             binary.ByteOrder
	version        int
	quantum        uint32
	ptrSize        int
	nfunc          int
	textStart      uint64 // 0 since Go 1.26 (no longer stored)
	funcnameOffset uint64
	funcnametab    []byte
	pctab          []byte
	pcln           []byte // functab followed by the _func records
}

func parsePclntab(data []byte, bo binary.ByteOrder) (*pclntab, error) {
	if len(data) < 8 {
		return nil, errors.New("pclntab too short")
	}
	magic := binary.LittleEndian.Uint32(data)
	if bo == binary.BigEndian {
		magic = binary.BigEndian.Uint32(data)
	}
	t := &pclntab{data: data, bo: bo}
	switch magic {
	case 0xfffffff0:
		t.version = ver118
	case 0xfffffff1:
		t.version = ver120
	default:
		return nil, fmt.Errorf("pclntab magic %#x: symbols are read for Go 1.18 and later only", magic)
	}
	t.quantum, t.ptrSize = uint32(data[6]), int(data[7])
	if t.ptrSize != 4 && t.ptrSize != 8 {
		return nil, fmt.Errorf("pclntab pointer size %d", t.ptrSize)
	}
	if len(data) < 8+8*t.ptrSize {
		return nil, errors.New("pclntab header truncated")
	}
	w := func(i int) uint64 {
		b := data[8+i*t.ptrSize:]
		if t.ptrSize == 8 {
			return bo.Uint64(b)
		}
		return uint64(bo.Uint32(b))
	}
	nfunc := w(0)
	if nfunc == 0 || nfunc > maxFuncs {
		return nil, fmt.Errorf("pclntab declares %d functions", nfunc)
	}
	t.nfunc, t.textStart, t.funcnameOffset = int(nfunc), w(2), w(3)
	slice := func(off uint64) ([]byte, error) {
		if off >= uint64(len(data)) {
			return nil, fmt.Errorf("pclntab offset %d beyond its %d bytes", off, len(data))
		}
		return data[off:], nil
	}
	var err error
	if t.funcnametab, err = slice(w(3)); err != nil {
		return nil, err
	}
	if t.pctab, err = slice(w(6)); err != nil {
		return nil, err
	}
	if t.pcln, err = slice(w(7)); err != nil {
		return nil, err
	}
	if uint64(len(t.pcln)) < (nfunc*2+1)*4 {
		return nil, errors.New("pclntab function table truncated")
	}
	return t, nil
}

const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	maxInlineEntries   = 1 << 16
)

func (t *pclntab) u32(b []byte, off uint64) (uint32, bool) {
	if off+4 > uint64(len(b)) || off+4 < off {
		return 0, false
	}
	return t.bo.Uint32(b[off:]), true
}

// nameOff returns function i's name offset (the _func's nameOff).
func (t *pclntab) nameOff(i int) (uint32, error) {
	funcoff, ok := t.u32(t.pcln, uint64(i*2+1)*4)
	if !ok {
		return 0, errors.New("function table truncated")
	}
	off, ok := t.u32(t.pcln, uint64(funcoff)+4)
	if !ok {
		return 0, errors.New("_func record truncated")
	}
	return off, nil
}

// name reads a NUL-terminated name from the function name table.
func (t *pclntab) name(off uint32) (string, error) {
	if uint64(off) >= uint64(len(t.funcnametab)) {
		return "", fmt.Errorf("function name offset %d out of range", off)
	}
	s := t.funcnametab[off:]
	if end := bytes.IndexByte(s, 0); end >= 0 {
		s = s[:end]
	}
	return string(s), nil
}

// inlined adds to names the name offsets of the functions inlined into
// function i. read returns n bytes at an offset from go:func.*.
func (t *pclntab) inlined(i int, read func(off uint64, n int) ([]byte, error), names map[uint32]struct{}) error {
	funcoff, ok := t.u32(t.pcln, uint64(i*2+1)*4)
	if !ok {
		return errors.New("function table truncated")
	}
	fn := uint64(funcoff)
	fields := uint64(11) // entryOff … startLine, then funcID/flag/pad/nfuncdata
	if t.version == ver118 {
		fields = 10 // no startLine
	}
	npcdata, ok := t.u32(t.pcln, fn+7*4)
	if !ok {
		return errors.New("_func record truncated")
	}
	last, ok := t.u32(t.pcln, fn+(fields-1)*4)
	if !ok {
		return errors.New("_func record truncated")
	}
	nfuncdata := last >> 24
	if t.bo == binary.BigEndian {
		nfuncdata = last & 0xff
	}
	if npcdata <= pcdataInlTreeIndex || nfuncdata <= funcdataInlTree || npcdata > 1<<10 {
		return nil
	}
	pcOff, ok := t.u32(t.pcln, fn+fields*4+pcdataInlTreeIndex*4)
	if !ok {
		return errors.New("_func pcdata truncated")
	}
	treeOff, ok := t.u32(t.pcln, fn+fields*4+uint64(npcdata)*4+funcdataInlTree*4)
	if !ok {
		return errors.New("_func funcdata truncated")
	}
	if pcOff == 0 || treeOff == ^uint32(0) {
		return nil
	}
	maxIdx, err := t.maxValue(pcOff)
	if err != nil {
		return err
	}
	if maxIdx < 0 {
		return nil
	}
	count := int(maxIdx) + 1
	if count > maxInlineEntries {
		return fmt.Errorf("inline tree of %d entries", count)
	}
	size, nameAt := 16, 4 // inlinedCall (Go 1.20+): funcID, pad[3], nameOff, parentPc, startLine
	if t.version == ver118 {
		size, nameAt = 20, 12 // parent, funcID, pad, file, line, nameOff, parentPc
	}
	raw, err := read(uint64(treeOff), count*size)
	if err != nil {
		return err
	}
	for k := 0; k < count; k++ {
		off := t.bo.Uint32(raw[k*size+nameAt:])
		if uint64(off) >= uint64(len(t.funcnametab)) {
			return fmt.Errorf("inlined function name offset %d out of range", off)
		}
		names[off] = struct{}{}
	}
	return nil
}

// maxValue decodes a pc-value table and returns its largest value (-1 for
// none), as cmd/internal/objfile and debug/gosym step through them.
func (t *pclntab) maxValue(off uint32) (int32, error) {
	if uint64(off) >= uint64(len(t.pctab)) {
		return 0, fmt.Errorf("pc-value table offset %d out of range", off)
	}
	p := t.pctab[off:]
	val, maxv := int32(-1), int32(-1)
	var pc uint64
	for steps := 0; ; steps++ {
		if steps > 1<<20 {
			return 0, errors.New("pc-value table does not end")
		}
		first := pc == 0
		uv, ok := varint(&p)
		if !ok {
			return 0, errors.New("pc-value table truncated")
		}
		if uv == 0 && !first {
			break
		}
		if uv&1 != 0 {
			uv = ^(uv >> 1)
		} else {
			uv >>= 1
		}
		pcd, ok := varint(&p)
		if !ok {
			return 0, errors.New("pc-value table truncated")
		}
		pc += uint64(pcd * t.quantum)
		val += int32(uv)
		maxv = max(maxv, val)
	}
	return maxv, nil
}

func varint(pp *[]byte) (uint32, bool) {
	var v uint32
	p := *pp
	for shift := uint(0); shift < 35; shift += 7 {
		if len(p) == 0 {
			return 0, false
		}
		b := p[0]
		p = p[1:]
		v |= uint32(b&0x7f) << shift
		if b&0x80 == 0 {
			*pp = p
			return v, true
		}
	}
	return 0, false
}
