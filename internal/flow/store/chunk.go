package store

import (
	"time"
	"unsafe"

	"github.com/palisade-dev/palisade/internal/flow"
)

// Chunks as queries read them. A query reads a segment's records chunk by
// chunk and column by column, whatever holds them: a hot segment's own
// slices, columns decoded from a row file, or a column file's mapped
// bytes, where each column is stored in the narrowest width (1, 2, 4 or 8
// bytes) that holds its values minus a base chosen per column and per
// file (frame of reference; times also in the µs the store keeps). A col
// describes one column of a chunk. Scan loops dispatch on its width once
// per chunk and column and run a loop instantiated for that width, with
// no branch on the width per row (see the kernels below); materializing a
// row reads its fields through col.at.

// col is one column of a chunk: stored values of w bytes each, in the
// machine's (little-endian) order, in place; a value is base + stored·unit
// (modulo 2⁶⁴; signed columns are int64 bits).
type col struct {
	b    []byte
	w    uint8  // 1, 2, 4 or 8
	base uint64 // the frame of reference
	unit uint64 // 1, or 1000 for times stored in µs
	// signed: the stored values are int64 (a hot segment's times, w 8,
	// base 0, unit 1), compared as such.
	signed bool
}

// word is a column's stored type.
type word interface {
	~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int64
}

// as views b as values of T, in place.
func as[T word](b []byte) []T {
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// at is value i of the column.
func (c *col) at(i int) uint64 {
	var x uint64
	switch c.w {
	case 1:
		x = uint64(c.b[i])
	case 2:
		x = uint64(as[uint16](c.b)[i])
	case 4:
		x = uint64(as[uint32](c.b)[i])
	default:
		x = as[uint64](c.b)[i]
	}
	return c.base + x*c.unit
}

// max is the largest value the column's width stores.
func (c *col) max() uint64 {
	if c.w >= 8 {
		return 1<<64 - 1
	}
	return 1<<(8*uint(c.w)) - 1
}

// wide is a column of n values of T held in a slice of T (a hot or decoded
// segment's columns).
func wide[T word](v []T, signed bool) col {
	var z T
	return col{b: bytesOf(v), w: uint8(unsafe.Sizeof(z)), unit: 1, signed: signed}
}

// chunk is up to chunkRows records as columns.
type chunk struct {
	n int
	// c holds the per-row columns (colStart … colConns) and colRelOff
	// (n+1 values indexing the related links).
	c [colRelOff + 1]col
	// The related links: a hot or decoded chunk's rels, else the column
	// file's three columns (colRelMs, colRelN, colRelWhy), from rc.
	rels []rel
	rc   [3]col
	// idRel: the ID times (the row's and its links') are stored as
	// offsets from the row's start in ms (column files), see idms.
	idRel bool
}

// chunkOf is c's records as a chunk (its memory, in place).
func chunkOf(c *columns) chunk {
	k := chunk{n: c.len(), rels: c.rels}
	k.c[colStart], k.c[colEnd] = wide(c.start, true), wide(c.end, true)
	k.c[colIDms], k.c[colIDn] = wide(c.idms, true), wide(c.idn, false)
	k.c[colPair], k.c[colAttr], k.c[colSport] = wide(c.pair, false), wide(c.attr, false), wide(c.sport, false)
	k.c[colFwdP], k.c[colFwdB] = wide(c.fwdP, false), wide(c.fwdB, false)
	k.c[colRevP], k.c[colRevB] = wide(c.revP, false), wide(c.revB, false)
	k.c[colConns], k.c[colRelOff] = wide(c.conns, false), wide(c.relOff, false)
	return k
}

// chunksOf is chunkOf of each of cs.
func chunksOf(cs []columns) []chunk {
	out := make([]chunk, len(cs))
	for i := range cs {
		out[i] = chunkOf(&cs[i])
	}
	return out
}

func (k *chunk) start(i int) int64 { return int64(k.c[colStart].at(i)) }

// startMs is what a column file's ID times of row i are offsets from.
func startMs(start int64) int64 { return start / 1e6 }

// idms is row i's ID time (unix ms).
func (k *chunk) idms(i int) int64 {
	v := int64(k.c[colIDms].at(i))
	if k.idRel {
		v += startMs(k.start(i))
	}
	return v
}

// related calls fn with each related link of row i.
func (k *chunk) related(i int, fn func(r rel)) {
	lo, hi := int(k.c[colRelOff].at(i)), int(k.c[colRelOff].at(i+1))
	var off int64
	if k.idRel {
		off = startMs(k.start(i))
	}
	for j := lo; j < hi; j++ {
		if k.rels != nil {
			fn(k.rels[j])
			continue
		}
		fn(rel{idms: int64(k.rc[0].at(j)) + off, idn: k.rc[1].at(j), reason: uint8(k.rc[2].at(j))})
	}
}

// fillRecord materializes record i of k into f (see view.fillRecord).
func (v *view) fillChunk(f *flow.Flow, k *chunk, i int, need fillNeed, ids bool) {
	if need.pair {
		v.fillPair(f, uint32(k.c[colPair].at(i)))
	}
	if need.attr {
		v.fillAttr(f, uint32(k.c[colAttr].at(i)))
	}
	f.Src.Port = uint16(k.c[colSport].at(i))
	if need.times {
		f.Start = time.Unix(0, k.start(i)).UTC()
		f.End = time.Unix(0, int64(k.c[colEnd].at(i))).UTC()
	}
	f.FwdPackets, f.FwdBytes = k.c[colFwdP].at(i), k.c[colFwdB].at(i)
	f.RevPackets, f.RevBytes = k.c[colRevP].at(i), k.c[colRevB].at(i)
	f.Conns = k.c[colConns].at(i)
	if !ids {
		f.ID = ""
		return
	}
	f.ID = flow.MakeID(time.UnixMilli(k.idms(i)), k.c[colIDn].at(i))
	f.Related = f.Related[:0]
	k.related(i, func(r rel) {
		f.Related = append(f.Related, flow.Related{ID: flow.MakeID(time.UnixMilli(r.idms), r.idn), Reason: reasonName(r.reason)})
	})
}

// The kernels: each filters the rows of a chunk — all of them (all), or
// those of sel — keeping the row numbers in sel, in order (sel has room
// for the chunk's rows; it is filtered in place). One instantiation per
// stored width; the loops append without a branch (k advances by 0 or 1).

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tabSel keeps the rows whose value x has tab[x] == 1 (match); tab[x] ==
// 0 is unknown: eval answers it (1 match, 2 no match) and records it.
func tabSel[T word](vals []T, tab []int8, sel []int32, all bool, eval func(x uint64) int8) []int32 {
	k := 0
	if all {
		sel = sel[:len(vals)]
		for i, x := range vals {
			r := tab[x]
			if r == 0 {
				r = eval(uint64(x))
			}
			sel[k] = int32(i)
			k += int(r & 1)
		}
		return sel[:k]
	}
	for _, i := range sel {
		x := vals[i]
		r := tab[x]
		if r == 0 {
			r = eval(uint64(x))
		}
		sel[k] = i
		k += int(r & 1)
	}
	return sel[:k]
}

// rangeSel keeps the rows whose value is within [lo, hi].
func rangeSel[T word](vals []T, lo, hi T, sel []int32, all bool) []int32 {
	k := 0
	if all {
		sel = sel[:len(vals)]
		for i, x := range vals {
			sel[k] = int32(i)
			k += b2i(x >= lo) & b2i(x <= hi)
		}
		return sel[:k]
	}
	for _, i := range sel {
		x := vals[i]
		sel[k] = i
		k += b2i(x >= lo) & b2i(x <= hi)
	}
	return sel[:k]
}

// numSel keeps the rows whose value (base + stored) passes t.
func numSel[T word](vals []T, base uint64, t numTest, sel []int32, all bool) []int32 {
	k := 0
	if all {
		sel = sel[:len(vals)]
		for i, x := range vals {
			sel[k] = int32(i)
			k += b2i(t.holds(base + uint64(x)))
		}
		return sel[:k]
	}
	for _, i := range sel {
		sel[k] = i
		k += b2i(t.holds(base + uint64(vals[i])))
	}
	return sel[:k]
}

// numSel2 keeps the rows whose sum of two values (base: both bases)
// passes t.
func numSel2[A, B word](a []A, b []B, base uint64, t numTest, sel []int32, all bool) []int32 {
	k := 0
	b = b[:len(a)]
	if all {
		sel = sel[:len(a)]
		for i, x := range a {
			sel[k] = int32(i)
			k += b2i(t.holds(base + uint64(x) + uint64(b[i])))
		}
		return sel[:k]
	}
	for _, i := range sel {
		sel[k] = i
		k += b2i(t.holds(base + uint64(a[i]) + uint64(b[i])))
	}
	return sel[:k]
}

// gather sets out[j] to the value of row idx[j] (idx nil: of row j).
func gather[T word](vals []T, base, unit uint64, idx []int32, out []uint64) {
	if idx == nil {
		out = out[:len(vals)]
		if unit == 1 {
			for j, x := range vals {
				out[j] = base + uint64(x)
			}
			return
		}
		for j, x := range vals {
			out[j] = base + uint64(x)*unit
		}
		return
	}
	out = out[:len(idx)]
	for j, i := range idx {
		out[j] = base + uint64(vals[i])*unit
	}
}

// findEq is the first row from i on whose stored value is x (-1: none).
func findEq[T word](vals []T, x T, i int) int {
	for ; i < len(vals); i++ {
		if vals[i] == x {
			return i
		}
	}
	return -1
}

// Dispatch: one switch on a column's width per chunk.

func (c *col) tabSel(tab []int8, sel []int32, all bool, eval func(x uint64) int8) []int32 {
	switch c.w {
	case 1:
		return tabSel(as[uint8](c.b), tab, sel, all, eval)
	case 2:
		return tabSel(as[uint16](c.b), tab, sel, all, eval)
	case 4:
		return tabSel(as[uint32](c.b), tab, sel, all, eval)
	}
	return tabSel(as[uint64](c.b), tab, sel, all, eval)
}

// rangeSel keeps the rows whose value is within [lo, hi] (as int64s: the
// bounds are turned into the stored values' domain once).
func (c *col) rangeSel(lo, hi int64, sel []int32, all bool) []int32 {
	if c.signed {
		return rangeSel(as[int64](c.b), lo, hi, sel, all)
	}
	// Stored values s stand for base + s·unit, base the column's minimum:
	// keep s within [⌈(lo-base)/unit⌉, ⌊(hi-base)/unit⌋].
	base := int64(c.base)
	if hi < base {
		return sel[:0]
	}
	slo := uint64(0)
	if lo > base {
		d := uint64(lo) - uint64(base)
		slo = d / c.unit
		if d%c.unit != 0 {
			slo++
		}
	}
	shi := (uint64(hi) - uint64(base)) / c.unit
	if slo > c.max() || slo > shi {
		return sel[:0]
	}
	shi = min(shi, c.max())
	switch c.w {
	case 1:
		return rangeSel(as[uint8](c.b), uint8(slo), uint8(shi), sel, all)
	case 2:
		return rangeSel(as[uint16](c.b), uint16(slo), uint16(shi), sel, all)
	case 4:
		return rangeSel(as[uint32](c.b), uint32(slo), uint32(shi), sel, all)
	}
	return rangeSel(as[uint64](c.b), slo, shi, sel, all)
}

func (c *col) numSel(t numTest, sel []int32, all bool) []int32 {
	switch c.w {
	case 1:
		return numSel(as[uint8](c.b), c.base, t, sel, all)
	case 2:
		return numSel(as[uint16](c.b), c.base, t, sel, all)
	case 4:
		return numSel(as[uint32](c.b), c.base, t, sel, all)
	}
	return numSel(as[uint64](c.b), c.base, t, sel, all)
}

// numSel2 is numSel on the sum of columns a and b.
func numSel2Of(a, b *col, t numTest, sel []int32, all bool) []int32 {
	switch a.w {
	case 1:
		return numSel2B(as[uint8](a.b), a.base, b, t, sel, all)
	case 2:
		return numSel2B(as[uint16](a.b), a.base, b, t, sel, all)
	case 4:
		return numSel2B(as[uint32](a.b), a.base, b, t, sel, all)
	}
	return numSel2B(as[uint64](a.b), a.base, b, t, sel, all)
}

func numSel2B[A word](a []A, abase uint64, b *col, t numTest, sel []int32, all bool) []int32 {
	base := abase + b.base
	switch b.w {
	case 1:
		return numSel2(a, as[uint8](b.b), base, t, sel, all)
	case 2:
		return numSel2(a, as[uint16](b.b), base, t, sel, all)
	case 4:
		return numSel2(a, as[uint32](b.b), base, t, sel, all)
	}
	return numSel2(a, as[uint64](b.b), base, t, sel, all)
}

func (c *col) gather(idx []int32, out []uint64) {
	switch c.w {
	case 1:
		gather(as[uint8](c.b), c.base, c.unit, idx, out)
	case 2:
		gather(as[uint16](c.b), c.base, c.unit, idx, out)
	case 4:
		gather(as[uint32](c.b), c.base, c.unit, idx, out)
	default:
		gather(as[uint64](c.b), c.base, c.unit, idx, out)
	}
}

// findEq is the first row from i on whose value is v (-1: none).
func (c *col) findEq(v uint64, i int) int {
	x := v - c.base
	if c.unit != 1 {
		if x%c.unit != 0 {
			return -1
		}
		x /= c.unit
	}
	if x > c.max() {
		return -1
	}
	switch c.w {
	case 1:
		return findEq(as[uint8](c.b), uint8(x), i)
	case 2:
		return findEq(as[uint16](c.b), uint16(x), i)
	case 4:
		return findEq(as[uint32](c.b), uint32(x), i)
	}
	return findEq(as[uint64](c.b), x, i)
}
