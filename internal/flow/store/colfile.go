package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Column files. A cold segment's records are also kept column by column
// in a file of their own (seg-N.pfc), written when the segment leaves the
// hot window: each column (start, end, ID, pair, attributes, source port,
// counters, related links) is a fixed-width little-endian array, so a
// query maps the file and reads the columns its filter names in place —
// a filter on the endpoints reads 4 bytes per flow, not a whole varint
// row — and materializes only the rows it returns. The page cache, not
// the heap, holds what was read.
//
// The row file (seg-N.pfs) stays the record of what was acknowledged;
// the column file is derived from it, like the summary: it names the row
// file length it covers, and one that is missing, stale or damaged is
// ignored (the segment is read from its row file, as before this format)
// and written again by a retention pass. Each 4 KiB page of the columns
// has its own CRC-32C, checked the first time a query reads the page, so
// a query touches only what it needs and still never trusts a damaged
// byte.
//
//	"PFCOL001" | header length u32 | header CRC-32C u32 | header | zero padding | columns (from dataOff, 8-aligned)
//
// The header (varints): version, covered row file bytes, rows, related
// links, pair and attribute dictionary sizes needed, dataOff, each
// column's offset and length (from dataOff), the dead rows bit set, and
// the page CRCs (4 bytes each).

const colSuffix = ".pfc"

var colMagic = [8]byte{'P', 'F', 'C', 'O', 'L', '0', '0', '1'}

const (
	colPage    = 4096
	colVersion = 1
)

// The columns of a column file, in file order.
const (
	colStart = iota
	colEnd
	colIDms
	colIDn
	colPair
	colAttr
	colSport
	colFwdP
	colFwdB
	colRevP
	colRevB
	colConns
	colRelOff
	colRels
	ncols
)

// colMask names columns (1 << colX).
type colMask uint16

const maskAll colMask = 1<<ncols - 1

// colWidth is each column's element size.
var colWidth = [ncols]int{8, 8, 8, 8, 4, 4, 2, 8, 8, 8, 8, 8, 4, int(unsafe.Sizeof(rel{}))}

// littleEndian: column files are read in place, as the machine's own
// integers; on a big-endian machine none are written or read.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// colFile is an open (mapped) column file.
type colFile struct {
	path           string
	covered        int64 // the row file bytes it was made from
	rows, nrels    int
	npairs, nattrs int
	size           int64
	data           []byte // the mapping
	dataOff        int
	off            [ncols][2]int // offset from dataOff, length
	crcs           []byte        // page CRCs, in the mapping
	dead           bitset
	cs             []columns // the columns in place, cut into chunks
	relOff         []uint32  // the whole relOff column
	verified       []atomic.Uint64
	bad            atomic.Bool
}

func (s *Store) colPath(bucket int64) string {
	p := s.segPath(bucket)
	return p[:len(p)-len(segSuffix)] + colSuffix
}

// encodeColFile lays out the rows of cs (chunks of chunkRows rows but the
// last; relOff indexes each chunk's rels) as a column file.
func encodeColFile(cs []columns, dead bitset, covered int64) []byte {
	n, nrels := 0, 0
	npairs, nattrs := 0, 0
	for i := range cs {
		c := &cs[i]
		n += c.len()
		if c.len() > 0 {
			nrels += int(c.relOff[c.len()] - c.relOff[0])
		}
		for _, p := range c.pair {
			npairs = max(npairs, int(p)+1)
		}
		for _, a := range c.attr {
			nattrs = max(nattrs, int(a)+1)
		}
	}
	var lens [ncols]int
	for k := range ncols {
		lens[k] = n * colWidth[k]
	}
	lens[colRelOff] = (n + 1) * 4
	lens[colRels] = nrels * colWidth[colRels]
	var offs [ncols]int
	dataLen := 0
	for k := range ncols {
		offs[k] = dataLen
		dataLen += (lens[k] + 7) &^ 7
	}
	data := make([]byte, dataLen)
	put := func(k int, at int, b []byte) { copy(data[offs[k]+at*colWidth[k]:], b) }
	row := 0
	relAt := uint32(0)
	relOff := unsafe.Slice((*uint32)(unsafe.Pointer(&data[offs[colRelOff]])), n+1)
	for i := range cs {
		c := &cs[i]
		m := c.len()
		if m == 0 {
			continue
		}
		put(colStart, row, bytesOf(c.start))
		put(colEnd, row, bytesOf(c.end))
		put(colIDms, row, bytesOf(c.idms))
		put(colIDn, row, bytesOf(c.idn))
		put(colPair, row, bytesOf(c.pair))
		put(colAttr, row, bytesOf(c.attr))
		put(colSport, row, bytesOf(c.sport))
		put(colFwdP, row, bytesOf(c.fwdP))
		put(colFwdB, row, bytesOf(c.fwdB))
		put(colRevP, row, bytesOf(c.revP))
		put(colRevB, row, bytesOf(c.revB))
		put(colConns, row, bytesOf(c.conns))
		rels := c.rels[c.relOff[0]:c.relOff[m]]
		put(colRels, int(relAt), bytesOf(rels))
		for j := range m {
			relOff[row+j] = relAt + c.relOff[j] - c.relOff[0]
		}
		relAt += uint32(len(rels))
		row += m
	}
	relOff[n] = relAt
	npages := (dataLen + colPage - 1) / colPage
	var h enc
	h.u(colVersion)
	h.u(uint64(covered))
	h.u(uint64(n))
	h.u(uint64(nrels))
	h.u(uint64(npairs))
	h.u(uint64(nattrs))
	hdrLen := func() int { return 16 + len(h.b) }
	// dataOff depends on the header's length, which depends on dataOff:
	// written last, as a fixed 8 bytes.
	for k := range ncols {
		h.u(uint64(offs[k]))
		h.u(uint64(lens[k]))
	}
	h.u(uint64(len(dead)))
	for _, w := range dead {
		h.u64(w)
	}
	h.u(uint64(npages))
	for p := range npages {
		h.b = binary.LittleEndian.AppendUint32(h.b, crc32.Checksum(data[p*colPage:min(dataLen, (p+1)*colPage)], crcTable))
	}
	dataOff := (hdrLen() + 8 + 7) &^ 7
	h.u64(uint64(dataOff))
	out := make([]byte, dataOff+dataLen)
	copy(out, colMagic[:])
	binary.LittleEndian.PutUint32(out[8:], uint32(len(h.b)))
	binary.LittleEndian.PutUint32(out[12:], crc32.Checksum(h.b, crcTable))
	copy(out[16:], h.b)
	copy(out[dataOff:], data)
	return out
}

// bytesOf is the memory of a slice of fixed-size values.
func bytesOf[T any](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(z)))
}

// writeColFile writes the column file of a segment's rows (cs) covering
// its row file's first covered bytes, and opens it. No fsync: a column
// file lost or torn in a crash fails its checks and is written again.
func (s *Store) writeColFile(bucket int64, cs []columns, dead bitset, covered int64, suffix string) (*colFile, error) {
	path := s.colPath(bucket) + suffix
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, encodeColFile(cs, dead, covered), 0o600); err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("flow store: %w", err)
	}
	if suffix != "" {
		return nil, nil
	}
	return openColFile(path)
}

var errColFile = errors.New("not a whole column file")

// openColFile maps a column file and checks its header (the pages are
// checked as they are read).
func openColFile(path string) (*colFile, error) {
	if !littleEndian {
		return nil, errColFile
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 16 || size > 1<<40 {
		return nil, errColFile
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("flow store: mapping %s: %w", path, err)
	}
	cf, err := parseColFile(data)
	if err != nil {
		syscall.Munmap(data)
		return nil, err
	}
	cf.path, cf.size = path, size
	return cf, nil
}

func parseColFile(data []byte) (*colFile, error) {
	if [8]byte(data[:8]) != colMagic {
		return nil, errColFile
	}
	hl := int(binary.LittleEndian.Uint32(data[8:]))
	if hl > len(data)-16 || crc32.Checksum(data[16:16+hl], crcTable) != binary.LittleEndian.Uint32(data[12:]) {
		return nil, errColFile
	}
	hdr := data[16 : 16+hl]
	r := &dec{b: hdr}
	if r.u() != colVersion {
		return nil, errColFile
	}
	cf := &colFile{data: data}
	cf.covered = int64(r.u())
	cf.rows, cf.nrels = int(r.u()), int(r.u())
	cf.npairs, cf.nattrs = int(r.u()), int(r.u())
	for k := range ncols {
		cf.off[k] = [2]int{int(r.u()), int(r.u())}
	}
	nd := r.count()
	cf.dead = make(bitset, nd)
	for i := range cf.dead {
		cf.dead[i] = r.u64()
	}
	if nd == 0 {
		cf.dead = nil
	}
	npages := r.count()
	if r.err != nil || len(r.b) < 4*npages+8 {
		return nil, errColFile
	}
	cf.crcs = r.b[:4*npages]
	cf.dataOff = int(binary.LittleEndian.Uint64(r.b[4*npages:]))
	dataLen := len(data) - cf.dataOff
	if cf.dataOff < 16+hl || dataLen < 0 || (dataLen+colPage-1)/colPage != npages {
		return nil, errColFile
	}
	for k := range ncols {
		want := cf.rows * colWidth[k]
		switch k {
		case colRelOff:
			want = (cf.rows + 1) * 4
		case colRels:
			want = cf.nrels * colWidth[k]
		}
		o := cf.off[k]
		if o[1] != want || o[0]%8 != 0 || o[0] < 0 || o[0]+o[1] > dataLen {
			return nil, errColFile
		}
	}
	cf.verified = make([]atomic.Uint64, (npages+63)/64)
	d := data[cf.dataOff:]
	all := columns{
		start: view64[int64](d, cf.off[colStart]), end: view64[int64](d, cf.off[colEnd]),
		idms: view64[int64](d, cf.off[colIDms]), idn: view64[uint64](d, cf.off[colIDn]),
		pair: view64[uint32](d, cf.off[colPair]), attr: view64[uint32](d, cf.off[colAttr]),
		sport: view64[uint16](d, cf.off[colSport]),
		fwdP:  view64[uint64](d, cf.off[colFwdP]), fwdB: view64[uint64](d, cf.off[colFwdB]),
		revP: view64[uint64](d, cf.off[colRevP]), revB: view64[uint64](d, cf.off[colRevB]),
		conns: view64[uint64](d, cf.off[colConns]), relOff: view64[uint32](d, cf.off[colRelOff]),
		rels: view64[rel](d, cf.off[colRels]),
	}
	cf.cs, cf.relOff = all.split(), all.relOff
	return cf, nil
}

// view64 is the column at o (offset, length) of d, in place.
func view64[T any](d []byte, o [2]int) []T {
	var z T
	n := o[1] / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&d[o[0]])), n)
}

// verify checks the pages of the byte range [lo, hi) of the columns (once
// per page); false when one is damaged.
func (cf *colFile) verify(lo, hi int) bool {
	if cf.bad.Load() {
		return false
	}
	for p := lo / colPage; p*colPage < hi; p++ {
		w, b := p>>6, uint64(1)<<(p&63)
		if cf.verified[w].Load()&b != 0 {
			continue
		}
		at := cf.dataOff + p*colPage
		if crc32.Checksum(cf.data[at:min(len(cf.data), at+colPage)], crcTable) != binary.LittleEndian.Uint32(cf.crcs[4*p:]) {
			cf.bad.Store(true)
			return false
		}
		cf.verified[w].Or(b)
	}
	return true
}

// verifyCols checks the columns of mask whole.
func (cf *colFile) verifyCols(mask colMask) bool {
	if cf.bad.Load() {
		return false
	}
	for k := range ncols {
		if mask&(1<<k) != 0 && !cf.verify(cf.off[k][0], cf.off[k][0]+cf.off[k][1]) {
			return false
		}
	}
	return true
}

// verifyRow checks the pages holding row g in every column, and its
// related links.
func (cf *colFile) verifyRow(g int) bool {
	for k := range colRels {
		w := colWidth[k]
		at := cf.off[k][0] + g*w
		end := at + w
		if k == colRelOff {
			end += 4
		}
		if !cf.verify(at, end) {
			return false
		}
	}
	lo, hi := cf.relOff[g], cf.relOff[g+1]
	if lo > hi || int(hi) > cf.nrels {
		cf.bad.Store(true)
		return false
	}
	w := colWidth[colRels]
	return cf.verify(cf.off[colRels][0]+int(lo)*w, cf.off[colRels][0]+int(hi)*w)
}

// verifyHits checks what materializing the rows hits needs: row by row
// when they are few, else every column whole.
func (cf *colFile) verifyHits(hits []int32) bool {
	if len(hits) > cf.rows/32 {
		return cf.verifyCols(maskAll)
	}
	for _, g := range hits {
		if !cf.verifyRow(int(g)) {
			return false
		}
	}
	return true
}

func (cf *colFile) unmap() {
	if cf.data != nil {
		syscall.Munmap(cf.data)
		cf.data, cf.cs = nil, nil
	}
}
