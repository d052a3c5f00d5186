package goexe

import (
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// exe is the little an executable format must answer for symbol reading.
type exe interface {
	// pclntab returns the pclntab bytes and their virtual address (0 when
	// unknown).
	pclntab() ([]byte, uint64, error)
	// symbol returns a symbol's virtual address, when a symbol table is present.
	symbol(name string) (uint64, bool)
	// readVA reads n bytes at a virtual address.
	readVA(addr uint64, n int) ([]byte, error)
	// dataSections returns the writable data the moduledata may live in.
	dataSections() [][]byte
	byteOrder() binary.ByteOrder
	goos() string
}

// maxSection bounds one section read into memory.
const maxSection = 1 << 30

func openExe(r io.ReaderAt) (exe, error) {
	var head [4]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, err
	}
	switch {
	case bytes.Equal(head[:], []byte("\x7fELF")):
		f, err := elf.NewFile(r)
		if err != nil {
			return nil, err
		}
		return &elfExe{f: f}, nil
	case bytes.HasPrefix(head[:], []byte("MZ")):
		f, err := pe.NewFile(r)
		if err != nil {
			return nil, err
		}
		return &peExe{f: f}, nil
	default:
		f, err := macho.NewFile(r)
		if err != nil {
			return nil, errors.New("not an ELF, PE or Mach-O executable")
		}
		return &machoExe{f: f}, nil
	}
}

func readSection(size uint64, data func() ([]byte, error)) ([]byte, error) {
	if size > maxSection {
		return nil, fmt.Errorf("section of %d bytes", size)
	}
	return data()
}

// ---- ELF

type elfExe struct {
	f    *elf.File
	syms map[string]uint64
	err  error
}

func (x *elfExe) byteOrder() binary.ByteOrder { return x.f.ByteOrder }
func (x *elfExe) goos() string                { return "" }

func (x *elfExe) pclntab() ([]byte, uint64, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := x.f.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
			b, err := readSection(s.Size, s.Data)
			return b, s.Addr, err
		}
	}
	// PIE executables built by external linkers may keep the pclntab inside
	// .data.rel.ro without a section of its own: search for its header.
	if s := x.f.Section(".data.rel.ro"); s != nil && s.Type != elf.SHT_NOBITS {
		b, err := readSection(s.Size, s.Data)
		if err != nil {
			return nil, 0, err
		}
		if off, ok := findPclntab(b, x.f.ByteOrder); ok {
			return b[off:], s.Addr + uint64(off), nil
		}
	}
	return nil, 0, errors.New("no pclntab")
}

func (x *elfExe) symbol(name string) (uint64, bool) {
	if x.syms == nil && x.err == nil {
		syms, err := x.f.Symbols()
		x.err = err
		x.syms = map[string]uint64{}
		for _, s := range syms {
			if s.Name == "go:func.*" || s.Name == "go.func.*" {
				x.syms[s.Name] = s.Value
			}
		}
	}
	a, ok := x.syms[name]
	return a, ok
}

func (x *elfExe) readVA(addr uint64, n int) ([]byte, error) {
	for _, p := range x.f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr+uint64(n) <= p.Vaddr+p.Filesz && addr+uint64(n) >= addr {
			buf := make([]byte, n)
			if _, err := p.ReadAt(buf, int64(addr-p.Vaddr)); err != nil {
				return nil, err
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("address %#x (+%d) not in a loaded segment", addr, n)
}

func (x *elfExe) dataSections() [][]byte {
	// The moduledata is in .go.module since Go 1.26, .noptrdata before.
	var out [][]byte
	for _, s := range x.f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_ALLOC != 0 && (s.Flags&elf.SHF_WRITE != 0 || s.Name == ".go.module") {
			if b, err := readSection(s.Size, s.Data); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// findPclntab searches b for a Go 1.18+ pclntab header.
func findPclntab(b []byte, bo binary.ByteOrder) (int, bool) {
	for i := 0; i+16 <= len(b); i += 4 {
		m := bo.Uint32(b[i:])
		if (m == 0xfffffff0 || m == 0xfffffff1) && b[i+4] == 0 && b[i+5] == 0 &&
			(b[i+6] == 1 || b[i+6] == 2 || b[i+6] == 4) && (b[i+7] == 4 || b[i+7] == 8) {
			if _, err := parsePclntab(b[i:], bo); err == nil {
				return i, true
			}
		}
	}
	return 0, false
}

// ---- PE

type peExe struct {
	f *pe.File
}

func (x *peExe) byteOrder() binary.ByteOrder { return binary.LittleEndian }
func (x *peExe) goos() string                { return "windows" }

func (x *peExe) imageBase() uint64 {
	switch h := x.f.OptionalHeader.(type) {
	case *pe.OptionalHeader32:
		return uint64(h.ImageBase)
	case *pe.OptionalHeader64:
		return h.ImageBase
	}
	return 0
}

// symAddr returns a COFF symbol's virtual address.
func (x *peExe) symAddr(name string) (uint64, bool) {
	for _, s := range x.f.Symbols {
		if s.Name == name && s.SectionNumber > 0 && int(s.SectionNumber) <= len(x.f.Sections) {
			sec := x.f.Sections[s.SectionNumber-1]
			return x.imageBase() + uint64(sec.VirtualAddress) + uint64(s.Value), true
		}
	}
	return 0, false
}

func (x *peExe) pclntab() ([]byte, uint64, error) {
	start, ok1 := x.symAddr("runtime.pclntab")
	end, ok2 := x.symAddr("runtime.epclntab")
	if ok1 && ok2 && end > start && end-start <= maxSection {
		b, err := x.readVA(start, int(end-start))
		return b, start, err
	}
	// Stripped: search the read-only data for the header.
	for _, s := range x.f.Sections {
		if s.Name != ".rdata" {
			continue
		}
		b, err := readSection(uint64(s.Size), s.Data)
		if err != nil {
			return nil, 0, err
		}
		if off, ok := findPclntab(b, binary.LittleEndian); ok {
			return b[off:], x.imageBase() + uint64(s.VirtualAddress) + uint64(off), nil
		}
	}
	return nil, 0, errors.New("no pclntab")
}

func (x *peExe) symbol(name string) (uint64, bool) { return x.symAddr(name) }

func (x *peExe) readVA(addr uint64, n int) ([]byte, error) {
	base := x.imageBase()
	for _, s := range x.f.Sections {
		va := base + uint64(s.VirtualAddress)
		if addr >= va && addr+uint64(n) <= va+uint64(s.Size) && addr+uint64(n) >= addr {
			buf := make([]byte, n)
			if _, err := s.ReadAt(buf, int64(addr-va)); err != nil {
				return nil, err
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("address %#x (+%d) not in a section", addr, n)
}

func (x *peExe) dataSections() [][]byte {
	var out [][]byte
	for _, s := range x.f.Sections {
		if s.Characteristics&pe.IMAGE_SCN_MEM_WRITE != 0 || s.Name == ".go.module" {
			if b, err := readSection(uint64(s.Size), s.Data); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// ---- Mach-O

type machoExe struct {
	f *macho.File
}

func (x *machoExe) byteOrder() binary.ByteOrder { return x.f.ByteOrder }
func (x *machoExe) goos() string                { return "darwin" }

func (x *machoExe) pclntab() ([]byte, uint64, error) {
	s := x.f.Section("__gopclntab")
	if s == nil {
		return nil, 0, errors.New("no __gopclntab section")
	}
	b, err := readSection(s.Size, s.Data)
	return b, s.Addr, err
}

func (x *machoExe) symbol(name string) (uint64, bool) {
	if x.f.Symtab == nil {
		return 0, false
	}
	for _, s := range x.f.Symtab.Syms {
		if s.Name == name {
			return s.Value, true
		}
	}
	return 0, false
}

func (x *machoExe) readVA(addr uint64, n int) ([]byte, error) {
	for _, l := range x.f.Loads {
		seg, ok := l.(*macho.Segment)
		if !ok || seg.Name == "__PAGEZERO" {
			continue
		}
		if addr >= seg.Addr && addr+uint64(n) <= seg.Addr+seg.Filesz && addr+uint64(n) >= addr {
			buf := make([]byte, n)
			if _, err := seg.ReadAt(buf, int64(addr-seg.Addr)); err != nil {
				return nil, err
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("address %#x (+%d) not in a segment", addr, n)
}

func (x *machoExe) dataSections() [][]byte {
	var out [][]byte
	for _, s := range x.f.Sections {
		if strings.HasPrefix(s.Seg, "__DATA") && s.Flags&0xff != 1 { // not S_ZEROFILL
			if b, err := readSection(s.Size, s.Data); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}
