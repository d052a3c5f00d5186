package pkgdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// A read-only reader of just enough of the SQLite file format
// (https://www.sqlite.org/fileformat2.html) to list the rows of one rowid
// table: rpm ≥ 4.16 keeps its headers in rpmdb.sqlite as
//
//	CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)
//
// A full SQLite engine would be the only cgo-free alternative (several MB
// of transpiled C for one table scan). Every page number, offset and length
// read from the file is checked; a page is visited at most once, so a
// corrupt or hostile file costs at most one pass over its bytes.

const sqliteMagic = "SQLite format 3\x00"

type sqliteDB struct {
	data     []byte
	pageSize int
	usable   int
	npages   int
	// wal holds the newest committed version of pages from the
	// write-ahead log, which override the main file's.
	wal map[uint32][]byte
	// budget is the number of payload bytes left to assemble: overflow
	// pages shared by many cells of a hostile file must not multiply work.
	budget int64
}

func openSQLite(data, wal []byte) (*sqliteDB, error) {
	if len(data) < 100 || string(data[:16]) != sqliteMagic {
		return nil, errors.New("not an SQLite 3 database")
	}
	ps := int(binary.BigEndian.Uint16(data[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("SQLite header: invalid page size %d", ps)
	}
	reserved := int(data[20])
	db := &sqliteDB{data: data, pageSize: ps, usable: ps - reserved, npages: len(data) / ps,
		budget: 2*int64(len(data)+len(wal)) + 1<<20}
	if db.usable < 480 {
		return nil, fmt.Errorf("SQLite header: %d reserved bytes leave too little of a %d byte page", reserved, ps)
	}
	if enc := binary.BigEndian.Uint32(data[56:60]); enc > 1 {
		// rpm writes UTF-8; only blobs are read here, but a UTF-16
		// database would have a UTF-16 schema.
		return nil, fmt.Errorf("SQLite header: text encoding %d, want UTF-8", enc)
	}
	if len(wal) > 0 {
		if err := db.readWAL(wal); err != nil {
			return nil, fmt.Errorf("write-ahead log: %w", err)
		}
	}
	return db, nil
}

// readWAL applies the frames of the write-ahead log up to its last valid
// commit, as a reader opening the database would.
func (db *sqliteDB) readWAL(wal []byte) error {
	if len(wal) < 32 {
		return nil // an empty or truncated log holds no commits
	}
	magic := binary.BigEndian.Uint32(wal[0:4])
	if magic != 0x377f0682 && magic != 0x377f0683 {
		return errors.New("bad magic")
	}
	var order binary.ByteOrder = binary.LittleEndian
	if magic&1 == 1 {
		order = binary.BigEndian
	}
	if ps := int(binary.BigEndian.Uint32(wal[8:12])); ps != db.pageSize {
		return fmt.Errorf("page size %d differs from the database's %d", ps, db.pageSize)
	}
	salt := wal[16:24]
	s0, s1 := walChecksum(order, wal[:24], 0, 0)
	if s0 != binary.BigEndian.Uint32(wal[24:28]) || s1 != binary.BigEndian.Uint32(wal[28:32]) {
		return nil // a log whose header does not check out is ignored by SQLite too
	}
	pending := map[uint32][]byte{}
	committed := map[uint32][]byte{}
	npages := db.npages
	for off := 32; off+24+db.pageSize <= len(wal); off += 24 + db.pageSize {
		fh, page := wal[off:off+24], wal[off+24:off+24+db.pageSize]
		if !bytes.Equal(fh[8:16], salt) {
			break
		}
		s0, s1 = walChecksum(order, fh[:8], s0, s1)
		s0, s1 = walChecksum(order, page, s0, s1)
		if s0 != binary.BigEndian.Uint32(fh[16:20]) || s1 != binary.BigEndian.Uint32(fh[20:24]) {
			break
		}
		pending[binary.BigEndian.Uint32(fh[0:4])] = page
		if size := binary.BigEndian.Uint32(fh[4:8]); size != 0 { // a commit frame
			for k, v := range pending {
				committed[k] = v
			}
			clear(pending)
			npages = int(size)
		}
	}
	if len(committed) > 0 {
		db.wal, db.npages = committed, npages
	}
	return nil
}

func walChecksum(order binary.ByteOrder, b []byte, s0, s1 uint32) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s0 += order.Uint32(b[i:]) + s1
		s1 += order.Uint32(b[i+4:]) + s0
	}
	return s0, s1
}

func (db *sqliteDB) page(n uint32) ([]byte, error) {
	if n == 0 || int64(n) > int64(db.npages) {
		return nil, fmt.Errorf("page %d out of range (%d pages)", n, db.npages)
	}
	if p, ok := db.wal[n]; ok {
		return p, nil
	}
	off := int64(n-1) * int64(db.pageSize)
	if off+int64(db.pageSize) > int64(len(db.data)) {
		return nil, fmt.Errorf("page %d beyond the end of the file", n)
	}
	return db.data[off : off+int64(db.pageSize)], nil
}

// tableRoot finds the root page of a table in sqlite_schema.
func (db *sqliteDB) tableRoot(name string) (uint32, error) {
	var root uint32
	found := false
	err := db.scanTable(1, func(_ int64, rec []byte) error {
		cols, err := sqliteRecord(rec)
		if err != nil {
			return err
		}
		if len(cols) < 4 || string(cols[0].raw) != "table" || string(cols[1].raw) != name {
			return nil
		}
		if cols[3].kind != colInt || cols[3].i <= 0 || cols[3].i > 1<<31 {
			return fmt.Errorf("sqlite_schema: table %s has root page %v", name, cols[3].i)
		}
		root, found = uint32(cols[3].i), true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite_schema: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("no table %q", name)
	}
	return root, nil
}

// scanTable calls fn with the rowid and record of every row of the table
// b-tree rooted at page root, in rowid order.
func (db *sqliteDB) scanTable(root uint32, fn func(rowid int64, rec []byte) error) error {
	seen := map[uint32]bool{}
	var walk func(n uint32, depth int) error
	walk = func(n uint32, depth int) error {
		if depth > 64 {
			return errors.New("b-tree deeper than 64 levels")
		}
		if seen[n] {
			return fmt.Errorf("page %d reached twice: the b-tree has a cycle", n)
		}
		seen[n] = true
		p, err := db.page(n)
		if err != nil {
			return err
		}
		h := 0
		if n == 1 {
			h = 100
		}
		if len(p) < h+12 {
			return fmt.Errorf("page %d: truncated", n)
		}
		kind := p[h]
		ncells := int(binary.BigEndian.Uint16(p[h+3:]))
		hdr := 8
		if kind == 5 {
			hdr = 12
		} else if kind != 13 {
			return fmt.Errorf("page %d: type %d is not a table b-tree page", n, kind)
		}
		ptrs := h + hdr
		if ptrs+2*ncells > db.usable {
			return fmt.Errorf("page %d: %d cells do not fit", n, ncells)
		}
		for i := 0; i < ncells; i++ {
			off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
			if off < ptrs+2*ncells || off >= db.usable {
				return fmt.Errorf("page %d: cell %d at offset %d out of range", n, i, off)
			}
			cell := p[off:db.usable]
			if kind == 5 {
				if len(cell) < 4 {
					return fmt.Errorf("page %d: cell %d truncated", n, i)
				}
				if err := walk(binary.BigEndian.Uint32(cell), depth+1); err != nil {
					return err
				}
				continue
			}
			size, k := sqliteVarint(cell)
			if k == 0 || size < 0 || size > int64(len(db.data))+int64(len(db.wal)*db.pageSize) {
				return fmt.Errorf("page %d: cell %d: bad payload size", n, i)
			}
			rowid, k2 := sqliteVarint(cell[k:])
			if k2 == 0 {
				return fmt.Errorf("page %d: cell %d: bad rowid", n, i)
			}
			rec, err := db.payload(cell[k+k2:], int(size))
			if err != nil {
				return fmt.Errorf("page %d: row %d: %w", n, rowid, err)
			}
			if err := fn(rowid, rec); err != nil {
				return fmt.Errorf("row %d: %w", rowid, err)
			}
		}
		if kind == 5 {
			return walk(binary.BigEndian.Uint32(p[h+8:]), depth+1)
		}
		return nil
	}
	return walk(root, 0)
}

// payload assembles a table leaf cell's payload of size bytes: the part
// stored on the page, then the overflow chain.
func (db *sqliteDB) payload(cell []byte, size int) ([]byte, error) {
	u := db.usable
	x := u - 35
	local := size
	if size > x {
		m := (u-12)*32/255 - 23
		local = m + (size-m)%(u-4)
		if local > x {
			local = m
		}
	}
	if local > len(cell) {
		return nil, errors.New("payload runs off the page")
	}
	if local == size {
		return cell[:size], nil
	}
	if db.budget -= int64(size); db.budget < 0 {
		return nil, errors.New("overflow pages add up to more than the file holds")
	}
	if len(cell) < local+4 {
		return nil, errors.New("missing overflow page number")
	}
	out := make([]byte, 0, size)
	out = append(out, cell[:local]...)
	next := binary.BigEndian.Uint32(cell[local:])
	for hops := 0; len(out) < size; hops++ {
		if next == 0 || hops > db.npages {
			return nil, errors.New("overflow chain ends early or loops")
		}
		p, err := db.page(next)
		if err != nil {
			return nil, fmt.Errorf("overflow: %w", err)
		}
		chunk := p[4:u]
		if rest := size - len(out); len(chunk) > rest {
			chunk = chunk[:rest]
		}
		out = append(out, chunk...)
		next = binary.BigEndian.Uint32(p)
	}
	return out, nil
}

const (
	colNull = iota
	colInt
	colFloat
	colBlob
	colText
)

type sqliteCol struct {
	kind int
	i    int64
	raw  []byte // blob or text bytes
}

// sqliteRecord decodes a record: a header of serial types, then the values.
func sqliteRecord(rec []byte) ([]sqliteCol, error) {
	hlen, k := sqliteVarint(rec)
	if k == 0 || hlen < int64(k) || hlen > int64(len(rec)) {
		return nil, errors.New("bad record header")
	}
	hdr, body := rec[k:hlen], rec[hlen:]
	var cols []sqliteCol
	for len(hdr) > 0 {
		st, n := sqliteVarint(hdr)
		if n == 0 || st < 0 {
			return nil, errors.New("bad serial type")
		}
		hdr = hdr[n:]
		var c sqliteCol
		size := 0
		switch {
		case st == 0:
			c.kind = colNull
		case st >= 1 && st <= 6:
			c.kind = colInt
			size = [...]int{0, 1, 2, 3, 4, 6, 8}[st]
		case st == 7:
			c.kind, size = colFloat, 8
		case st == 8 || st == 9:
			c.kind, c.i = colInt, st-8
		case st >= 12:
			c.kind = colBlob
			if st%2 == 1 {
				c.kind = colText
			}
			if (st-12)/2 > int64(len(body)) {
				return nil, errors.New("value runs past the record")
			}
			size = int((st - 12) / 2)
		default:
			return nil, fmt.Errorf("reserved serial type %d", st)
		}
		if size > len(body) {
			return nil, errors.New("value runs past the record")
		}
		v := body[:size]
		body = body[size:]
		switch c.kind {
		case colInt:
			if size > 0 {
				x := int64(int8(v[0]))
				for _, b := range v[1:] {
					x = x<<8 | int64(b)
				}
				c.i = x
			}
		case colBlob, colText:
			c.raw = v
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// sqliteVarint decodes a big-endian base-128 varint of up to 9 bytes; n is
// 0 when b is too short.
func sqliteVarint(b []byte) (v int64, n int) {
	var x uint64
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return int64(x<<8 | uint64(b[i])), 9
		}
		x = x<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return int64(x), i + 1
		}
	}
	return int64(x), 9
}
