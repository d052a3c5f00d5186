package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
// a filter on the endpoints reads 1 to 4 bytes per flow, not a whole
// varint row — and materializes only the rows it returns. The page
// cache, not the heap, holds what was read.
//
// Each column is stored in the narrowest width (1, 2, 4 or 8 bytes) that
// holds every value of the file minus the column's base (its minimum:
// frame of reference), times in µs (the unit the row file keeps), and
// the ID times (a flow's and its related flows') as offsets in ms from
// the flow's start, which they mostly equal: times within a 10-minute
// segment fit 4 bytes, ID times 1 or 2, counters often 1 or 2, pair and
// attribute IDs 2 or 4. The widths and bases are in the header (version
// 3); versions 1 (fixed widths) and 2 (whole ID times) are read as absent
// (see below).
//
// The row file (seg-N.pfs) stays the record of what was acknowledged;
// the column file is derived from it, like the summary: it names the row
// file length it covers, and one that is missing, stale, damaged or of
// another version is ignored (the segment is read from its row file, as
// before this format) and written again by a retention pass. Each 4 KiB
// page of the columns has its own CRC-32C, checked the first time a query
// reads the page, so a query touches only what it needs and still never
// trusts a damaged byte.
//
//	"PFCOL001" | header length u32 | header CRC-32C u32 | header | zero padding | columns (from dataOff, 8-aligned)
//
// The header (varints): version, covered row file bytes, rows, related
// links, pair and attribute dictionary sizes needed, each column's offset
// and length (from dataOff), width, base and unit, the dead rows bit set,
// the page CRCs (4 bytes each) and dataOff (8 bytes).

const colSuffix = ".pfc"

var colMagic = [8]byte{'P', 'F', 'C', 'O', 'L', '0', '0', '1'}

const (
	colPage = 4096
	// colVersion 3: per-column widths and bases, ID times as offsets from
	// the start (2: ID times whole; 1: fixed widths).
	colVersion = 3
)

// The columns of a column file, in file order: one value per row up to
// colConns, n+1 offsets in colRelOff, one value per related link after.
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
	colRelMs  // a related link's ID time (ms)
	colRelN   // its ID number
	colRelWhy // its reason bit
	ncols
)

// colMask names columns (1 << colX).
type colMask uint16

const maskAll colMask = 1<<ncols - 1

// colSigned are the columns of int64 values.
const colSigned colMask = 1<<colStart | 1<<colEnd | 1<<colIDms | 1<<colRelMs

// colCount is how many values column k holds.
func colCount(k, rows, nrels int) int {
	switch {
	case k == colRelOff:
		return rows + 1
	case k > colRelOff:
		return nrels
	}
	return rows
}

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
	cols           [ncols]col    // each column whole, in place
	crcs           []byte        // page CRCs, in the mapping
	dead           bitset
	cs             []chunk // the columns in place, cut into chunks
	verified       []atomic.Uint64
	bad            atomic.Bool
}

func (s *Store) colPath(bucket int64) string {
	p := s.segPath(bucket)
	return p[:len(p)-len(segSuffix)] + colSuffix
}

// colValues appends column k of cs's rows (related links: those of each
// chunk's rows) to out, as uint64s (int64 columns: their bits).
func colValues(cs []columns, k int, out []uint64) []uint64 {
	for i := range cs {
		c := &cs[i]
		m := c.len()
		if m == 0 {
			continue
		}
		rels := c.rels[c.relOff[0]:c.relOff[m]]
		switch k {
		case colStart:
			out = appendAs(out, c.start)
		case colEnd:
			out = appendAs(out, c.end)
		case colIDms:
			for j, ms := range c.idms {
				out = append(out, uint64(ms-startMs(c.start[j])))
			}
		case colIDn:
			out = appendAs(out, c.idn)
		case colPair:
			out = appendAs(out, c.pair)
		case colAttr:
			out = appendAs(out, c.attr)
		case colSport:
			out = appendAs(out, c.sport)
		case colFwdP:
			out = appendAs(out, c.fwdP)
		case colFwdB:
			out = appendAs(out, c.fwdB)
		case colRevP:
			out = appendAs(out, c.revP)
		case colRevB:
			out = appendAs(out, c.revB)
		case colConns:
			out = appendAs(out, c.conns)
		case colRelMs:
			for j := range m {
				for _, r := range c.rels[c.relOff[j]:c.relOff[j+1]] {
					out = append(out, uint64(r.idms-startMs(c.start[j])))
				}
			}
		case colRelN:
			for _, r := range rels {
				out = append(out, r.idn)
			}
		case colRelWhy:
			for _, r := range rels {
				out = append(out, uint64(r.reason))
			}
		}
	}
	return out
}

func appendAs[T word](out []uint64, v []T) []uint64 {
	for _, x := range v {
		out = append(out, uint64(x))
	}
	return out
}

// colFrame chooses a column's base, unit and width for its values: the base
// is the minimum, the unit 1000 for times when every value is a whole µs
// from it, the width the narrowest holding the largest offset.
func colFrame(vals []uint64, signed, time bool) (base, unit uint64, w uint8) {
	if len(vals) == 0 {
		return 0, 1, 1
	}
	lo, hi := vals[0], vals[0]
	if signed {
		l, h := int64(lo), int64(hi)
		for _, x := range vals {
			l, h = min(l, int64(x)), max(h, int64(x))
		}
		lo, hi = uint64(l), uint64(h)
	} else {
		for _, x := range vals {
			lo, hi = min(lo, x), max(hi, x)
		}
	}
	unit = 1
	if time {
		unit = 1000
		for _, x := range vals {
			if (x-lo)%1000 != 0 {
				unit = 1
				break
			}
		}
	}
	span := (hi - lo) / unit
	switch {
	case span < 1<<8:
		w = 1
	case span < 1<<16:
		w = 2
	case span < 1<<32:
		w = 4
	default:
		w = 8
	}
	return lo, unit, w
}

// pack stores vals minus base, in units, as T.
func pack[T word](dst []byte, vals []uint64, base, unit uint64) {
	d := as[T](dst)[:len(vals)]
	if unit == 1000 {
		for i, x := range vals {
			d[i] = T((x - base) / 1000)
		}
		return
	}
	for i, x := range vals {
		d[i] = T(x - base)
	}
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
	// Each column's values, framed and packed in turn (a column's offset
	// depends only on the columns before it).
	var bases, units [ncols]uint64
	var widths [ncols]uint8
	var lens, offs [ncols]int
	data := make([]byte, 0, n*48+nrels*16)
	var vals []uint64
	for k := range ncols {
		if k == colRelOff {
			vals = vals[:0]
			at := uint64(0)
			for i := range cs {
				c := &cs[i]
				for j := range c.len() {
					vals = append(vals, at+uint64(c.relOff[j]-c.relOff[0]))
				}
				if c.len() > 0 {
					at += uint64(c.relOff[c.len()] - c.relOff[0])
				}
			}
			vals = append(vals, at)
		} else {
			vals = colValues(cs, k, vals[:0])
		}
		bases[k], units[k], widths[k] = colFrame(vals, colSigned&(1<<k) != 0, k == colStart || k == colEnd)
		lens[k] = colCount(k, n, nrels) * int(widths[k])
		offs[k] = len(data)
		data = append(data, make([]byte, (lens[k]+7)&^7)...)
		dst := data[offs[k] : offs[k]+lens[k]]
		switch widths[k] {
		case 1:
			pack[uint8](dst, vals, bases[k], units[k])
		case 2:
			pack[uint16](dst, vals, bases[k], units[k])
		case 4:
			pack[uint32](dst, vals, bases[k], units[k])
		default:
			pack[uint64](dst, vals, bases[k], units[k])
		}
	}
	dataLen := len(data)
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
		h.u(uint64(widths[k]))
		h.u(bases[k])
		h.u(units[k])
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

var (
	errColFile = errors.New("not a whole column file")
	// errColVersion: a column file of another version (read as absent,
	// written again in this version by a retention pass).
	errColVersion = errors.New("column file of another version")
)

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

// colFileVersion reads only the version of the column file at path (0:
// not a column file).
func colFileVersion(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var b [16 + binary.MaxVarintLen64]byte
	n, _ := io.ReadFull(f, b[:])
	if n < 17 || [8]byte(b[:8]) != colMagic {
		return 0
	}
	v, k := binary.Uvarint(b[16:n])
	if k <= 0 {
		return 0
	}
	return v
}

func parseColFile(data []byte) (*colFile, error) {
	if len(data) < 16 || [8]byte(data[:8]) != colMagic {
		return nil, errColFile
	}
	hl := int(binary.LittleEndian.Uint32(data[8:]))
	if hl < 0 || hl > len(data)-16 || crc32.Checksum(data[16:16+hl], crcTable) != binary.LittleEndian.Uint32(data[12:]) {
		return nil, errColFile
	}
	hdr := data[16 : 16+hl]
	r := &dec{b: hdr}
	if v := r.u(); v != colVersion {
		if r.err != nil {
			return nil, errColFile
		}
		return nil, errColVersion
	}
	cf := &colFile{data: data}
	cf.covered = int64(r.u())
	// Counts and offsets are bounded by the file's length (a value takes
	// a byte at least), the dictionary sizes by 2³².
	upTo := func(limit int) int {
		v := r.u()
		if v > uint64(limit) {
			r.fail()
			return 0
		}
		return int(v)
	}
	cf.rows, cf.nrels = upTo(len(data)), upTo(len(data))
	cf.npairs, cf.nattrs = upTo(1<<32), upTo(1<<32)
	var ws [ncols]uint64
	var bases, units [ncols]uint64
	for k := range ncols {
		cf.off[k] = [2]int{upTo(len(data)), upTo(len(data))}
		ws[k], bases[k], units[k] = r.u(), r.u(), r.u()
	}
	nd := r.count()
	if r.err != nil {
		return nil, errColFile
	}
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
	if cf.dataOff < 16+hl || cf.dataOff%8 != 0 || dataLen < 0 || (dataLen+colPage-1)/colPage != npages {
		return nil, errColFile
	}
	d := data[cf.dataOff:]
	for k := range ncols {
		w, unit := ws[k], units[k]
		if w != 1 && w != 2 && w != 4 && w != 8 || unit != 1 && unit != 1000 {
			return nil, errColFile
		}
		want := colCount(k, cf.rows, cf.nrels) * int(w)
		o := cf.off[k]
		if o[1] != want || o[0]%8 != 0 || o[0] > dataLen || o[1] > dataLen-o[0] {
			return nil, errColFile
		}
		cf.cols[k] = col{b: d[o[0] : o[0]+o[1] : o[0]+o[1]], w: uint8(w), base: bases[k], unit: unit}
	}
	cf.verified = make([]atomic.Uint64, (npages+63)/64)
	for lo := 0; lo < cf.rows; lo += chunkRows {
		hi := min(cf.rows, lo+chunkRows)
		k := chunk{n: hi - lo}
		for c := range colRelOff + 1 {
			x := cf.cols[c]
			w := int(x.w)
			end := hi
			if c == colRelOff {
				end++
			}
			x.b = x.b[lo*w : end*w : end*w]
			k.c[c] = x
		}
		k.rc = [3]col{cf.cols[colRelMs], cf.cols[colRelN], cf.cols[colRelWhy]}
		k.idRel = true
		cf.cs = append(cf.cs, k)
	}
	return cf, nil
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
	for k := range colRelOff + 1 {
		w := int(cf.cols[k].w)
		at := cf.off[k][0] + g*w
		end := at + w
		if k == colRelOff {
			end += w
		}
		if !cf.verify(at, end) {
			return false
		}
	}
	ro := &cf.cols[colRelOff]
	lo, hi := ro.at(g), ro.at(g+1)
	if lo > hi || hi > uint64(cf.nrels) {
		cf.bad.Store(true)
		return false
	}
	for k := colRelMs; k < ncols; k++ {
		w := int(cf.cols[k].w)
		if !cf.verify(cf.off[k][0]+int(lo)*w, cf.off[k][0]+int(hi)*w) {
			return false
		}
	}
	return true
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
