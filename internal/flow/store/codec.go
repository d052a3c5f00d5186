package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// A segment file is a sequence of blocks:
//
//	magic "PFB1" | payload length u32 | CRC-32C of payload u32 | payload
//
// A block's payload holds the dictionary entries it adds to its segment
// (strings, endpoints, observation point sets, endpoint pairs, attribute
// combinations) followed by records that refer to them by number. A block
// that is cut short or fails its CRC ends the file: it was never
// acknowledged, and is truncated away on open.

var blockMagic = [4]byte{'P', 'F', 'B', '1'}

const blockHeader = 12

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("corrupt block")

// enc appends varints to a byte slice.
type enc struct{ b []byte }

func (e *enc) u(v uint64)    { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) u64(v uint64)  { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) byte1(v uint8) { e.b = append(e.b, v) }
func (e *enc) str(s string)  { e.u(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bool1(v bool)  { e.byte1(b2u(v)) }
func (e *enc) ids(v ...uint32) {
	for _, x := range v {
		e.u(uint64(x))
	}
}

func b2u(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// dec reads what enc wrote; the first error sticks and reads return zeros.
type dec struct {
	b   []byte
	err error
}

func (d *dec) u() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) byte1() uint8 {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) str() string {
	n := d.u()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// id reads a dictionary reference, which must be below limit.
func (d *dec) id(limit int) uint32 {
	v := d.u()
	if v >= uint64(limit) {
		d.fail()
		return 0
	}
	return uint32(v)
}

// count reads a length, bounded by what is left so a corrupt count cannot
// make us allocate without limit.
func (d *dec) count() int {
	n := d.u()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

// frame wraps a payload into a block.
func frame(payload []byte) []byte {
	out := make([]byte, blockHeader, blockHeader+len(payload))
	copy(out, blockMagic[:])
	binary.LittleEndian.PutUint32(out[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(out[8:], crc32.Checksum(payload, crcTable))
	return append(out, payload...)
}

// frameInPlace fills the header of a block whose payload follows
// blockHeader reserved bytes in b.
func frameInPlace(b []byte) {
	copy(b, blockMagic[:])
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-blockHeader))
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[blockHeader:], crcTable))
}

// unframe splits the next block off data. ok is false at a torn or
// corrupt block (or the end).
func unframe(data []byte) (payload, rest []byte, ok bool) {
	if len(data) < blockHeader || [4]byte(data[:4]) != blockMagic {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(data[4:])
	if uint64(len(data)-blockHeader) < uint64(n) {
		return nil, nil, false
	}
	payload = data[blockHeader : blockHeader+int(n)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(data[8:]) {
		return nil, nil, false
	}
	return payload, data[blockHeader+int(n):], true
}

// frames walks the blocks of data. A block that is cut short or fails its
// CRC is skipped: the walk resumes at the next whole block behind it (a
// flipped byte in the middle of a file must not lose what follows). fn
// receives each whole block's offset, payload and end offset. bad lists
// the damaged byte ranges between whole blocks; tail is the offset where
// the last whole block ends (anything after it is a torn tail: a write cut
// short by a crash, never acknowledged).
func frames(data []byte, fn func(off int, payload []byte, end int)) (bad [][2]int, tail int) {
	off := 0
	for off < len(data) {
		payload, rest, ok := unframe(data[off:])
		if ok {
			end := len(data) - len(rest)
			if fn != nil {
				fn(off, payload, end)
			}
			off, tail = end, end
			continue
		}
		// Resync: the next offset where a whole block starts.
		next := -1
		for p := off + 1; p+blockHeader <= len(data); p++ {
			i := indexMagic(data[p:])
			if i < 0 {
				break
			}
			p += i
			if _, _, ok := unframe(data[p:]); ok {
				next = p
				break
			}
		}
		if next < 0 {
			break // torn tail
		}
		bad = append(bad, [2]int{off, next})
		off = next
	}
	return bad, tail
}

func indexMagic(b []byte) int { return bytes.Index(b, blockMagic[:]) }
