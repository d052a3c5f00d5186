package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// widthFlows are four segments of flows (one per 4 h partition from tw),
// each with values that need column width w (1, 2, 4, 8 bytes) after the
// column's base is taken off: times over 200 µs, 60 ms, 60 s and 3.3 h
// (more than 2³² µs), counters up to 2⁶⁴-1, pair and attribute IDs and
// related links beyond 2¹⁶ (66,000 flows, two chunks), random 64-bit
// IDs, ID times up to 71 minutes from the start and related flows' ID
// times months before it.
var tw = time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC)

// widthSeg is the partition of the flows of width w.
func widthSeg(w int) time.Time {
	return tw.Add(time.Duration(map[int]int{1: 0, 2: 1, 4: 2, 8: 3}[w]) * 4 * time.Hour)
}

func widthFlows(w int) []flow.Flow {
	seg := widthSeg(w)
	n := map[int]int{1: 200, 2: 1000, 4: 66_000, 8: 300}[w]
	r := rand.New(rand.NewPCG(uint64(w), 7))
	out := make([]flow.Flow, n)
	src := flow.Endpoint{IP: "10.1.0.1", Namespace: "w", Name: "client", Kind: "pod"}
	for i := range out {
		f := &out[i]
		f.Mode, f.Proto = flow.DetailedMode, "tcp"
		f.Src, f.Dst = src, flow.Endpoint{IP: "10.2.0.1", Namespace: "w", Name: "server", Kind: "pod", Port: 443}
		f.Src.Namespace = fmt.Sprintf("w%d", w)
		f.Flags = []string{flow.FlagSYN}
		f.Replied = i%3 != 0
		f.Points = []flow.ObservationPoint{{Node: "node1", Interface: "eth0", Kind: "node"}}
		var idAt, relAt time.Time
		var idn, relN uint64
		switch w {
		case 1:
			f.Start = seg.Add(time.Duration(i) * time.Microsecond)
			f.End = f.Start.Add(50 * time.Microsecond)
			idAt, idn = seg, 1_000_000+uint64(i)
			f.Src.Port = uint16(40000 + i%100)
			f.FwdPackets, f.FwdBytes = 1<<50+uint64(i), uint64(i)
			f.RevPackets, f.RevBytes = 7, uint64(200-i)
			f.Conns = uint64(1 + i%5)
			relAt, relN = seg, uint64(i)
		case 2:
			f.Start = seg.Add(time.Duration(i) * 60 * time.Microsecond)
			f.End = f.Start.Add(time.Duration(i%7) * time.Microsecond)
			idAt, idn = seg.Add(time.Duration(i)*60*time.Millisecond), uint64(i)*60
			f.Dst.Port = uint16(1000 + i%300)                                     // 300 pairs
			f.Points = []flow.ObservationPoint{{Node: fmt.Sprintf("n%d", i%300)}} // 300 attribute combinations
			f.Src.Port = uint16(1000 + i*50)
			f.FwdPackets, f.FwdBytes = uint64(i)*60, 1<<33+uint64(i)*65
			f.RevPackets, f.RevBytes = 65535-uint64(i), uint64(i)*10
			f.Conns = uint64(i) * 64
			relAt, relN = seg.Add(time.Duration(i)*60*time.Millisecond), uint64(i)*50
		case 4:
			f.Start = seg.Add(time.Duration(i) * 900 * time.Microsecond)
			f.End = f.Start.Add(time.Duration(i%1000) * time.Millisecond)
			idAt, idn = seg.Add(time.Duration(i)*65*time.Millisecond), uint64(i)*65_000
			f.Dst.Port = uint16(i % 65536) // > 2¹⁶ pairs
			if i >= 65536 {
				f.Dst.IP = "10.2.0.2"
			}
			f.Points = []flow.ObservationPoint{{Node: fmt.Sprintf("n%d", i)}} // > 2¹⁶ combinations
			f.Src.Port = uint16(i)
			f.FwdPackets, f.FwdBytes = uint64(i)*60_000, 1<<40+uint64(i)*60_000
			f.RevPackets, f.RevBytes = uint64(i)*65_000, 1<<32-1-uint64(i)
			f.Conns = uint64(i) * 1000
			relAt, relN = seg.Add(time.Duration(i)*65*time.Millisecond), uint64(i)*65_000
		case 8:
			f.Start = seg.Add(time.Duration(i) * 40 * time.Second) // 3.3 h: > 2³² µs
			f.End = f.Start.Add(time.Duration(i) * time.Second)
			idAt, idn = f.Start, r.Uint64()
			f.Src.Port = uint16(r.Uint32())
			f.FwdPackets = 0
			if i%2 == 1 {
				f.FwdPackets = math.MaxUint64 - uint64(i)
			}
			f.FwdBytes = 1<<63 + uint64(i%200)
			f.RevPackets, f.RevBytes = 1<<62*uint64(i%3), uint64(i)<<55
			f.Conns = uint64(i) << 40
			relAt, relN = seg.Add(-time.Duration(i)*30*24*time.Hour), r.Uint64()
		}
		f.ID = flow.MakeID(idAt, idn)
		f.Related = []flow.Related{{ID: flow.MakeID(relAt, relN), Reason: flow.ReasonClusterIP}}
	}
	return out
}

// widthQueries are searches over each segment's whole time range and a
// window inside it (so times are compared per flow), with counter,
// source port and pair conditions near the values' edges.
func widthQueries(t *testing.T) []namedQuery {
	t.Helper()
	var out []namedQuery
	filters := []string{
		"",
		`fwd.bytes > 100`,
		`bytes >= 9223372036854775808`,
		`fwd.packets > 1e19`,
		`rev.packets < 5`,
		`conns = 3`,
		`packets > 1000 and conns < 100000`,
		`src.port = 40050`,
		`src.port >= 30000`,
		`dst.port = 1005`,
		`dst.port < 2000 and fwd.bytes > 8589934600`,
		`related exists and replied = false`,
		`src.port > 1000 and replied = true`, // per record
	}
	type win struct {
		name     string
		from, to time.Time
	}
	wins := []win{{"all", tw.Add(-time.Hour), tw.Add(24 * time.Hour)}}
	for _, w := range []int{1, 2, 4, 8} {
		seg := widthSeg(w)
		span := map[int]time.Duration{1: 200 * time.Microsecond, 2: 60 * time.Millisecond, 4: time.Minute, 8: 200 * time.Minute}[w]
		// Not on whole µs: the bounds fall between stored values.
		wins = append(wins, win{fmt.Sprintf("w%d window", w), seg.Add(span/3 + 1), seg.Add(2*span/3 - 1)})
	}
	for _, wn := range wins {
		for _, f := range filters {
			q, err := flow.NewQuery(f, wn.from.UnixNano(), wn.to.UnixNano(), 3000)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, namedQuery{wn.name + ": " + f, q})
		}
	}
	return out
}

// Column files store each column in the width its values need: every
// width is chosen where the values call for it (counters of 2⁶⁴-1, times
// spanning more than 2³² µs, more than 2¹⁶ pairs), and a store answers
// every query the same with the segments hot, evicted in place, reopened
// cold and read from the row files.
func TestColumnWidths(t *testing.T) {
	dir := t.TempDir()
	allHot := Options{Partition: 4 * time.Hour, HotWindow: 1000 * 24 * time.Hour}
	s := open(t, dir, allHot)
	n := 0
	for _, w := range []int{1, 2, 4, 8} {
		fs := widthFlows(w)
		n += len(fs)
		for lo := 0; lo < len(fs); lo += 10_000 {
			if err := s.Append(fs[lo:min(len(fs), lo+10_000)], nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	mix := widthQueries(t)
	want := ask(t, s, mix)
	total := 0
	for _, q := range mix {
		total += len(want.search[q.name])
		if strings.HasPrefix(q.name, "all: ") && q.name != "all: " && len(want.search[q.name]) == 0 {
			t.Errorf("%s matches nothing: the query tests nothing", q.name)
		}
	}
	if st := s.Stats(); st.Flows != n {
		t.Fatalf("stored %d flows, want %d", st.Flows, n)
	}

	s.opts.HotWindow = time.Nanosecond
	s.Retain(time.Now())
	if st := s.Stats(); st.HotSegments != 0 || st.ColdRowOnly != 0 || st.Segments != 4 {
		t.Fatalf("after eviction: %+v", st)
	}
	sameAnswers(t, "evicted in place", want, ask(t, s, mix))
	s.Close()

	// Each column has the width its values need in its segment's file.
	need := map[int]map[int]uint8{
		1: {colStart: 1, colEnd: 1, colIDms: 1, colIDn: 1, colPair: 1, colAttr: 1, colSport: 1, colFwdP: 1, colFwdB: 1,
			colRevP: 1, colRevB: 1, colConns: 1, colRelOff: 1, colRelMs: 1, colRelN: 1, colRelWhy: 1},
		2: {colStart: 2, colEnd: 2, colIDms: 2, colIDn: 2, colPair: 2, colAttr: 2, colSport: 2, colFwdP: 2, colFwdB: 2,
			colRevP: 2, colRevB: 2, colConns: 2, colRelOff: 2, colRelMs: 2, colRelN: 2, colRelWhy: 1},
		4: {colStart: 4, colEnd: 4, colIDms: 4, colIDn: 4, colPair: 4, colAttr: 4, colSport: 2, colFwdP: 4, colFwdB: 4,
			colRevP: 4, colRevB: 4, colConns: 4, colRelOff: 4, colRelMs: 4, colRelN: 4, colRelWhy: 1},
		8: {colStart: 8, colEnd: 8, colIDms: 1, colIDn: 8, colPair: 1, colAttr: 1, colSport: 2, colFwdP: 8, colFwdB: 1,
			colRevP: 8, colRevB: 8, colConns: 8, colRelOff: 2, colRelMs: 8, colRelN: 8, colRelWhy: 1},
	}
	for _, w := range []int{1, 2, 4, 8} {
		bucket := widthSeg(w).UnixNano()
		s := &Store{dir: dir}
		cf, err := openColFile(s.colPath(bucket))
		if err != nil {
			t.Fatal(err)
		}
		for c, wc := range need[w] {
			if cf.cols[c].w != wc {
				t.Errorf("segment of width %d: column %d stored in %d bytes, want %d", w, c, cf.cols[c].w, wc)
			}
		}
		if u := cf.cols[colStart].unit; u != 1000 {
			t.Errorf("segment of width %d: times stored in units of %d ns, want 1000", w, u)
		}
		if w == 4 && len(cf.cs) != 2 {
			t.Errorf("66,000 flows in %d chunks", len(cf.cs))
		}
		cf.unmap()
	}

	// Reopened cold, nothing cached: every query reads the column files.
	s = open(t, dir, Options{Partition: 4 * time.Hour, HotWindow: time.Nanosecond, ColdCacheBytes: 1})
	sameAnswers(t, "reopened cold", want, ask(t, s, mix))
	if st := s.Stats(); st.ColdRowOnly != 0 || st.ColdReads == 0 {
		t.Fatalf("reopened cold: %+v", st)
	}
	s.Close()

	// From the row files alone.
	cols, _ := filepath.Glob(filepath.Join(dir, "*"+colSuffix))
	for _, p := range cols {
		os.Remove(p)
	}
	s = open(t, dir, Options{Partition: 4 * time.Hour, HotWindow: time.Nanosecond, ColdCacheBytes: 1})
	defer s.Close()
	sameAnswers(t, "row files only", want, ask(t, s, mix))
	t.Logf("%d queries, %d flows in all", len(mix), total)
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// testdata/colv1 is a store written by the release before column widths
// (240 flows over 3 cold segments, a replaced flow, related links): its
// column files are of version 1.
const colV1Store = "testdata/colv1"

var colV1Time = time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)

func colV1Queries(t *testing.T) []namedQuery {
	t.Helper()
	var out []namedQuery
	for _, f := range []string{"", `src.namespace = "db"`, `fwd.bytes > 100000000`, `related exists`, `src.port = 30007`, `conns = 3 and replied = true`} {
		for _, r := range [][2]time.Duration{{-time.Hour, time.Hour}, {7 * time.Minute, 13 * time.Minute}} {
			q, err := flow.NewQuery(f, colV1Time.Add(r[0]).UnixNano(), colV1Time.Add(r[1]).UnixNano(), 1000)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, namedQuery{fmt.Sprintf("%s %v", f, r), q})
		}
	}
	return out
}

// colVersions are the versions of the column files in dir.
func colVersions(t *testing.T, dir string) []uint64 {
	t.Helper()
	cols, _ := filepath.Glob(filepath.Join(dir, "*"+colSuffix))
	var vs []uint64
	for _, p := range cols {
		vs = append(vs, colFileVersion(p))
	}
	return vs
}

// Column files of the previous version are read as absent: queries read
// the row files and answer the same, and retention passes write the
// files again in this version — whether a query found them first or a
// retention pass did.
func TestOldColumnFileVersion(t *testing.T) {
	mix := colV1Queries(t)
	if vs := colVersions(t, colV1Store); len(vs) != 3 || slices.ContainsFunc(vs, func(v uint64) bool { return v != 1 }) {
		t.Fatalf("testdata: column file versions %v", vs)
	}
	// The answers from the row files, every segment hot.
	ref := open(t, copyDir(t, colV1Store), Options{HotWindow: 1000 * 24 * time.Hour})
	want := ask(t, ref, mix)
	ref.Close()
	if len(want.search[mix[0].name]) != 240 {
		t.Fatalf("testdata: %d flows", len(want.search[mix[0].name]))
	}

	for _, first := range []string{"query", "retention"} {
		t.Run(first+" first", func(t *testing.T) {
			dir := copyDir(t, colV1Store)
			var log syncBuf
			o := Options{HotWindow: time.Nanosecond, ColdCacheBytes: 1, Logger: logTo(&log)}
			s := open(t, dir, o)
			defer func() { s.Close() }()
			if first == "query" {
				sameAnswers(t, "version 1 files", want, ask(t, s, mix))
				if st := s.Stats(); st.ColdRowOnly != 3 {
					t.Fatalf("version 1 files taken as current: %+v", st)
				}
			}
			s.Retain(time.Now())
			if st := s.Stats(); st.ColdRowOnly != 0 {
				t.Fatalf("after a retention pass: %+v\n%s", st, log.String())
			}
			if vs := colVersions(t, dir); !slices.Equal(vs, []uint64{colVersion, colVersion, colVersion}) {
				t.Fatalf("column files not rewritten: versions %v", vs)
			}
			for _, l := range []string{"column files of another version", "wrote the column files of cold segments"} {
				if strings.Count(log.String(), l) != 1 {
					t.Fatalf("want one log line %q:\n%s", l, log.String())
				}
			}
			sameAnswers(t, "rewritten", want, ask(t, s, mix))
			s.Close()
			s = open(t, dir, o)
			sameAnswers(t, "reopened", want, ask(t, s, mix))
			if st := s.Stats(); st.ColdRowOnly != 0 || len(movedAside(t, dir)) != 0 {
				t.Fatalf("reopened: %+v", st)
			}
		})
	}
}

// fuzzColumns builds columns from fuzz input: row and link counts, and for
// each column a span (a shift of 64-bit words) and whether times are in
// whole µs, so every width and base is met.
func fuzzColumns(data []byte) []columns {
	if len(data) < ncols+2 {
		return nil
	}
	rows := int(binary.LittleEndian.Uint16(data)) % 3000
	ctl := data[2 : 2+ncols]
	words := data[2+ncols:]
	k := 0
	word := func() uint64 {
		if len(words) == 0 {
			return 0
		}
		var b [8]byte
		for i := range b {
			b[i] = words[k%len(words)]
			k++
		}
		return binary.LittleEndian.Uint64(b[:])
	}
	val := func(c int) uint64 {
		x := word() >> (ctl[c] % 65 & 63)
		if ctl[c]%65 == 64 {
			x = 0
		}
		if ctl[c]&0x80 != 0 && (c == colStart || c == colEnd) {
			x = x / 1000 * 1000
		}
		return x
	}
	var all columns
	base := [ncols]uint64{}
	for c := range ncols {
		base[c] = word()
	}
	for range rows {
		var r row
		r.start, r.end = int64(base[colStart]+val(colStart)), int64(base[colEnd]+val(colEnd))
		r.idms, r.idn = int64(base[colIDms]+val(colIDms)), base[colIDn]+val(colIDn)
		r.pair, r.attr = uint32(val(colPair)), uint32(val(colAttr))
		r.sport = uint16(val(colSport))
		for i := range r.n {
			r.n[i] = base[colFwdP+i] + val(colFwdP+i)
		}
		var rels []rel
		for range val(colRelOff) % 3 {
			rels = append(rels, rel{idms: int64(base[colRelMs] + val(colRelMs)), idn: base[colRelN] + val(colRelN), reason: uint8(val(colRelWhy))})
		}
		all.addRow(r, rels)
	}
	if rows == 0 {
		return nil
	}
	return all.split()
}

// readAll reads every value of every chunk of cf through the accessors
// the queries use.
func readAll(cf *colFile) (cs []columns) {
	for i := range cf.cs {
		k := &cf.cs[i]
		var c columns
		for j := range k.n {
			var rels []rel
			k.related(j, func(r rel) { rels = append(rels, r) })
			c.addRow(row{start: k.start(j), end: int64(k.c[colEnd].at(j)), idms: k.idms(j), idn: k.c[colIDn].at(j),
				pair: uint32(k.c[colPair].at(j)), attr: uint32(k.c[colAttr].at(j)), sport: uint16(k.c[colSport].at(j)),
				n: [5]uint64{k.c[colFwdP].at(j), k.c[colFwdB].at(j), k.c[colRevP].at(j), k.c[colRevB].at(j), k.c[colConns].at(j)}}, rels)
		}
		cs = append(cs, c)
	}
	return cs
}

// FuzzColumnFile: columns of any values survive a column file unchanged
// (each column in the width its values need), and a column file with any
// header — its CRC made right, so the parser sees it — is rejected or
// read without a panic, its damaged pages found.
func FuzzColumnFile(f *testing.F) {
	f.Add(append([]byte{200, 0}, make([]byte, ncols+64)...))
	seed := []byte{0x10, 0x01}
	for c := range ncols {
		seed = append(seed, byte(c*9), 0x80|byte(c*17))
	}
	seed = append(seed, []byte("0123456789abcdefghijklmnopqrstuvwxyz\xff\xfe\x00\x01")...)
	f.Add(seed)
	f.Add(encodeColFile(fuzzColumns(seed), bitset{5}, 777)) // a column file of this version
	if b, err := os.ReadFile(filepath.Join(colV1Store, "seg-1764064800000000000.pfc")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytesHasMagic(data) {
			// A column file: fix its header's CRC and read what parses.
			d := slices.Clone(data)
			if len(d) >= 16 {
				if hl := int(binary.LittleEndian.Uint32(d[8:])); hl <= len(d)-16 {
					binary.LittleEndian.PutUint32(d[12:], crc32.Checksum(d[16:16+hl], crcTable))
				}
			}
			cf, err := parseColFile(d)
			if err != nil {
				return
			}
			for g := range cf.rows {
				cf.verifyRow(g)
			}
			if cf.verifyCols(maskAll) {
				readAll(cf)
			}
			return
		}
		cs := fuzzColumns(data)
		if cs == nil {
			return
		}
		var dead bitset
		if len(data) > 41 && data[40]&1 != 0 {
			dead.set(uint32(data[41]) % uint32(rows(cs)))
		}
		b := encodeColFile(cs, dead, 12345)
		cf, err := parseColFile(b)
		if err != nil {
			t.Fatalf("a column file written does not parse: %v", err)
		}
		if !cf.verifyCols(maskAll) || cf.covered != 12345 || !reflect.DeepEqual(cf.dead, dead) {
			t.Fatalf("a column file written reads back damaged (covered %d, dead %v)", cf.covered, cf.dead)
		}
		if want, back := flat(cs), flat(readAll(cf)); !reflect.DeepEqual(want, back) {
			t.Fatalf("columns changed through a column file")
		}
		for g := range cf.rows {
			if !cf.verifyRow(g) {
				t.Fatalf("row %d reads back damaged", g)
			}
		}
		// Any flipped byte of the columns is found.
		if len(b) > cf.dataOff {
			at := cf.dataOff + int(binary.LittleEndian.Uint16(data))%(len(b)-cf.dataOff)
			b[at] ^= 0x20
			cf, err := parseColFile(b)
			if err != nil {
				t.Fatal(err)
			}
			if cf.verifyCols(maskAll) {
				t.Fatalf("a flipped byte at %d of the columns went unnoticed", at)
			}
		}
	})
}

// flat is the rows of chunks cs as one columns.
func flat(cs []columns) columns {
	var out columns
	for i := range cs {
		c := &cs[i]
		for j := range c.len() {
			out.addRow(row{c.start[j], c.end[j], c.idms[j], c.idn[j], c.pair[j], c.attr[j], c.sport[j],
				[5]uint64{c.fwdP[j], c.fwdB[j], c.revP[j], c.revB[j], c.conns[j]}}, c.rels[c.relOff[j]:c.relOff[j+1]])
		}
	}
	return out
}

func bytesHasMagic(b []byte) bool { return len(b) >= 8 && [8]byte(b[:8]) == colMagic }
