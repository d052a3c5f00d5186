package pkgdb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A read-only reader of Berkeley DB hash databases, the format of rpm's
// Packages file up to rpm 4.15 (RHEL/CentOS ≤ 8, Amazon Linux 2): the
// layout of libdb's db_page.h. Pages are read in file order; hash pages
// hold key/value item pairs, values larger than a page fraction live on
// chains of overflow pages. Byte order follows the metadata page's magic.

const (
	bdbHashMagic   = 0x061561
	bdbPageHeader  = 26 // sizeof(PAGE) without checksum or encryption
	bdbPHashUnsort = 2  // P_HASH_UNSORTED (before libdb 4.6)
	bdbPOverflow   = 7  // P_OVERFLOW
	bdbPHashMeta   = 8  // P_HASHMETA
	bdbPHash       = 13 // P_HASH
	bdbHKeyData    = 1  // H_KEYDATA
	bdbHOffPage    = 3  // H_OFFPAGE
)

func bdbOrder(data []byte) binary.ByteOrder {
	if len(data) < 512 {
		return nil
	}
	if binary.LittleEndian.Uint32(data[12:16]) == bdbHashMagic {
		return binary.LittleEndian
	}
	if binary.BigEndian.Uint32(data[12:16]) == bdbHashMagic {
		return binary.BigEndian
	}
	return nil
}

func isBDBHash(data []byte) bool { return bdbOrder(data) != nil }

// bdbValues calls fn with every value of the hash database whose key is not
// rpm's header-instance counter (key 0).
func bdbValues(data []byte, fn func([]byte) error) error {
	order := bdbOrder(data)
	if order == nil {
		return errors.New("not a Berkeley DB hash database")
	}
	pageSize := int(order.Uint32(data[20:24]))
	if pageSize < 512 || pageSize > 64<<10 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("Berkeley DB metadata: invalid page size %d", pageSize)
	}
	if data[24] != 0 {
		return errors.New("Berkeley DB metadata: encrypted database")
	}
	if data[25] != bdbPHashMeta {
		return fmt.Errorf("Berkeley DB metadata: page type %d, want hash metadata", data[25])
	}
	if data[26]&1 != 0 {
		return errors.New("Berkeley DB metadata: checksummed pages are not supported")
	}
	last := int64(order.Uint32(data[32:36]))
	npages := int64(len(data) / pageSize)
	if last >= npages {
		return fmt.Errorf("Berkeley DB metadata: last page %d beyond the file's %d pages", last, npages)
	}
	// Off-page values of a real database use each overflow page once; a
	// hostile one sharing chains between items must not multiply work.
	budget := 2*int64(len(data)) + 1<<20
	page := func(n uint32) ([]byte, error) {
		if int64(n) > last {
			return nil, fmt.Errorf("page %d beyond the last page %d", n, last)
		}
		return data[int(n)*pageSize : (int(n)+1)*pageSize], nil
	}
	for n := uint32(1); int64(n) <= last; n++ {
		p, _ := page(n)
		if t := p[25]; t != bdbPHash && t != bdbPHashUnsort {
			continue
		}
		entries := int(order.Uint16(p[20:22]))
		if entries%2 != 0 || bdbPageHeader+2*entries > pageSize {
			return fmt.Errorf("page %d: bad item count %d", n, entries)
		}
		item := func(i int) ([]byte, error) {
			off := int(order.Uint16(p[bdbPageHeader+2*i:]))
			end := pageSize
			if i > 0 {
				end = int(order.Uint16(p[bdbPageHeader+2*(i-1):]))
			}
			if off < bdbPageHeader+2*entries || off >= end || end > pageSize {
				return nil, fmt.Errorf("page %d: item %d at %d..%d out of range", n, i, off, end)
			}
			return p[off:end], nil
		}
		for i := 0; i < entries; i += 2 {
			key, err := item(i)
			if err != nil {
				return err
			}
			val, err := item(i + 1)
			if err != nil {
				return err
			}
			if key[0] == bdbHKeyData && len(key) == 5 && order.Uint32(key[1:]) == 0 {
				continue // rpm's next-instance counter
			}
			switch val[0] {
			case bdbHKeyData:
				err = fn(val[1:])
			case bdbHOffPage:
				var v []byte
				if v, err = bdbOverflow(order, val, page, pageSize, &budget); err == nil {
					err = fn(v)
				}
			default:
				err = fmt.Errorf("item type %d (duplicates are not used by rpm)", val[0])
			}
			if err != nil {
				return fmt.Errorf("page %d: item %d: %w", n, i+1, err)
			}
		}
	}
	return nil
}

// bdbOverflow follows an H_OFFPAGE item (type, 3 unused bytes, first
// overflow page, total length) through its chain of overflow pages.
func bdbOverflow(order binary.ByteOrder, item []byte, page func(uint32) ([]byte, error), pageSize int, budget *int64) ([]byte, error) {
	if len(item) < 12 {
		return nil, errors.New("truncated off-page item")
	}
	next, total := order.Uint32(item[4:8]), int64(order.Uint32(item[8:12]))
	if *budget -= total; *budget < 0 {
		return nil, fmt.Errorf("off-page items add up to more than the file holds (this one: %d bytes)", total)
	}
	out := make([]byte, 0, min(total, 1<<20))
	for hops := 0; int64(len(out)) < total; hops++ {
		if next == 0 || hops > int(total)/(pageSize-bdbPageHeader)+1 {
			return nil, fmt.Errorf("overflow chain ends after %d of %d bytes", len(out), total)
		}
		p, err := page(next)
		if err != nil {
			return nil, err
		}
		if p[25] != bdbPOverflow {
			return nil, fmt.Errorf("overflow page %d has type %d", next, p[25])
		}
		n := int(order.Uint16(p[22:24])) // OV_LEN
		if n > pageSize-bdbPageHeader || int64(len(out)+n) > total {
			return nil, fmt.Errorf("overflow page %d: bad length %d", next, n)
		}
		out = append(out, p[bdbPageHeader:bdbPageHeader+n]...)
		next = order.Uint32(p[16:20])
	}
	return out, nil
}
