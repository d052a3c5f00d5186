package store

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// movedAside lists the files in dir/damaged.
func movedAside(t *testing.T, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dir, "damaged"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// blockOffsets returns the offsets of a file's blocks.
func blockOffsets(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	frames(data, func(off int, _ []byte, _ int) { offs = append(offs, off) })
	return offs
}

// A flipped byte in the middle of a log file loses only the batch it is
// in: the batches logged before and after it are still pending.
func TestWALDamagedInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	var log syncBuf
	s := open(t, dir, Options{Logger: logTo(&log)})
	for i := range uint64(3) {
		b := flow.Batch{Agent: "a", Node: "n", Observations: []flow.Observation{{Agent: "a", Seq: 10*i + 1}, {Agent: "a", Seq: 10*i + 2}}}
		if err := s.Log(&b); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "wal", "*.log"))
	if len(files) != 1 {
		t.Fatalf("log files: %v", files)
	}
	offs := blockOffsets(t, files[0])
	flipByte(t, files[0], int64(offs[1]+blockHeader+5))
	s = open(t, dir, Options{Logger: logTo(&log)})
	defer s.Close()
	p, err := s.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, b := range p {
		for _, o := range b.Observations {
			seqs = append(seqs, o.Seq)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 21 22]" {
		t.Fatalf("pending after a damaged middle batch: %v", seqs)
	}
	if len(movedAside(t, dir)) != 1 || !strings.Contains(log.String(), "moved a damaged file aside") {
		t.Fatalf("damaged log file not moved aside: %v\n%s", movedAside(t, dir), log.String())
	}
}

// The dictionary is kept twice: a truncated (or damaged) copy is repaired
// from the other, and every flow stays readable.
func TestTruncatedDictionary(t *testing.T) {
	for _, which := range []string{dictFile, dictMirror, "both"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			var log syncBuf
			s := open(t, dir, Options{Partition: time.Minute, Logger: logTo(&log)})
			if err := s.Append([]flow.Flow{nsFlow(1, t0, "first")}, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Append([]flow.Flow{nsFlow(2, t0.Add(2*time.Minute), "second")}, nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
			paths := []string{filepath.Join(dir, which)}
			if which == "both" {
				paths = []string{filepath.Join(dir, dictFile), filepath.Join(dir, dictMirror)}
			}
			for _, p := range paths {
				offs := blockOffsets(t, p)
				if err := os.Truncate(p, int64(offs[1]+7)); err != nil { // into the second batch's entries
					t.Fatal(err)
				}
			}
			s = open(t, dir, Options{Partition: time.Minute, Logger: logTo(&log)})
			defer s.Close()
			fs, _ := s.Search(query(t, "", 10))
			if which == "both" {
				// The second batch's entries are gone from both copies: its
				// segment block is moved aside, the first batch stays.
				if len(fs) != 1 || fs[0].Src.Namespace != "first" || len(movedAside(t, dir)) != 1 {
					t.Fatalf("both copies truncated: %d flows, moved aside %v\n%s", len(fs), movedAside(t, dir), log.String())
				}
				if err := s.Append([]flow.Flow{nsFlow(3, t0, "third")}, nil); err != nil {
					t.Fatal(err)
				}
				return
			}
			if len(fs) != 2 {
				t.Fatalf("one copy truncated: %d flows\n%s", len(fs), log.String())
			}
			if len(movedAside(t, dir)) != 1 {
				t.Fatalf("damaged copy not moved aside: %v", movedAside(t, dir))
			}
			a, _ := os.ReadFile(filepath.Join(dir, dictFile))
			b, _ := os.ReadFile(filepath.Join(dir, dictMirror))
			if string(a) != string(b) {
				t.Fatalf("copies differ after the repair: %d and %d bytes", len(a), len(b))
			}
		})
	}
}

// A damaged done set is moved aside and rebuilt from the segments: the
// records stored as flows stay done (a resend is not stored twice).
func TestCorruptDoneState(t *testing.T) {
	dir := t.TempDir()
	var log syncBuf
	s := open(t, dir, Options{Partition: time.Minute, HotWindow: time.Nanosecond, Logger: logTo(&log)})
	obs := flow.Seqs{}
	obs.Add("a", 7)
	if err := s.Append([]flow.Flow{testFlow(1, t0)}, obs); err != nil {
		t.Fatal(err)
	}
	s.Retain(time.Now()) // cold, summarised: its records are not read at open
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, doneFile), []byte("PFB1garbage-garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{Partition: time.Minute, HotWindow: time.Nanosecond, Logger: logTo(&log)})
	defer s.Close()
	if !s.Done("a", 7) {
		t.Fatalf("done set not rebuilt\n%s", log.String())
	}
	if fs, _ := s.Search(query(t, "", 10)); len(fs) != 1 {
		t.Fatalf("flows: %d", len(fs))
	}
	if len(movedAside(t, dir)) != 1 {
		t.Fatalf("damaged done set not moved aside: %v", movedAside(t, dir))
	}
}

// colByte is the offset in a column file of byte i of column k.
func colByte(t *testing.T, path string, k, i int) int64 {
	t.Helper()
	cf, err := openColFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cf.unmap()
	return int64(cf.dataOff + cf.off[k][0] + i)
}

// A cold segment with a damaged block keeps serving its other blocks (and
// the other segments keep serving); the next retention pass moves the file
// aside and rewrites it with its whole blocks, with a log line. Its column
// file is damaged too, so queries read the row file.
func TestCorruptColdSegment(t *testing.T) {
	dir := t.TempDir()
	var log syncBuf
	o := Options{Partition: time.Minute, HotWindow: time.Nanosecond, Logger: logTo(&log)}
	s := open(t, dir, o)
	for i := range 3 {
		var fs []flow.Flow
		for j := range 10 {
			fs = append(fs, nsFlow(i*10+j, t0.Add(time.Duration(i*10+j)*time.Second), fmt.Sprintf("b-%d", i)))
		}
		fs = append(fs, nsFlow(100+i, t0.Add(5*time.Minute), "other"))
		if err := s.Append(fs, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Retain(time.Now())
	path := s.segPath(t0.UnixNano() / int64(time.Minute) * int64(time.Minute))
	offs := blockOffsets(t, path)
	if len(offs) != 3 {
		t.Fatalf("blocks: %v", offs)
	}
	flipByte(t, path, int64(offs[1]+blockHeader+3))
	col := s.colPath(t0.UnixNano() / int64(time.Minute) * int64(time.Minute))
	flipByte(t, col, colByte(t, col, colPair, 5))
	s.cold.clear()
	fs, _ := s.Search(query(t, "", 100))
	if len(fs) != 23 {
		t.Fatalf("with a damaged cold block: %d flows, want 23", len(fs))
	}
	if n, _ := s.Search(query(t, `src.namespace = "b-1"`, 100)); len(n) != 0 {
		t.Fatalf("damaged block's flows: %d", len(n))
	}
	s.Retain(time.Now())
	if len(movedAside(t, dir)) != 1 || !strings.Contains(log.String(), "damaged blocks in a segment") {
		t.Fatalf("not moved aside: %v\n%s", movedAside(t, dir), log.String())
	}
	s.Close()
	s = open(t, dir, o)
	defer s.Close()
	if fs, _ := s.Search(query(t, "", 100)); len(fs) != 23 {
		t.Fatalf("after repair and reopen: %d flows", len(fs))
	}
	if err := s.Append([]flow.Flow{nsFlow(200, t0.Add(time.Second), "late")}, nil); err != nil {
		t.Fatal(err)
	}
	if fs, _ := s.Search(query(t, "", 100)); len(fs) != 24 {
		t.Fatalf("a late flow in the repaired cold segment: %d flows", len(fs))
	}
}

// A damaged column file costs nothing: queries read the segment's row
// file instead (with a log line), and the next retention pass moves the
// column file aside and writes it again.
func TestCorruptColumnFile(t *testing.T) {
	dir := t.TempDir()
	var log syncBuf
	o := Options{Partition: time.Minute, HotWindow: time.Nanosecond, Logger: logTo(&log)}
	s := open(t, dir, o)
	var fs []flow.Flow
	for i := range 30 {
		fs = append(fs, nsFlow(i, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("b-%d", i%3)))
	}
	if err := s.Append(fs, nil); err != nil {
		t.Fatal(err)
	}
	s.Retain(time.Now())
	if st := s.Stats(); st.HotSegments != 0 || st.ColdRowOnly != 0 {
		t.Fatalf("after eviction: %+v", st)
	}
	want, _ := s.Search(query(t, `src.namespace = "b-1"`, 100))
	if len(want) != 10 {
		t.Fatalf("b-1: %d flows", len(want))
	}
	col := s.colPath(t0.UnixNano() / int64(time.Minute) * int64(time.Minute))
	s.Close()
	flipByte(t, col, colByte(t, col, colAttr, 7))
	s = open(t, dir, o)
	got, _ := s.Search(query(t, `src.namespace = "b-1"`, 100))
	if !reflect.DeepEqual(got, want) || !strings.Contains(log.String(), "damaged page in a column file") {
		t.Fatalf("with a damaged column file: %d flows (want %d)\n%s", len(got), len(want), log.String())
	}
	if st := s.Stats(); st.ColdRowOnly != 1 {
		t.Fatalf("damaged column file still counted as current: %+v", st)
	}
	s.Retain(time.Now())
	if len(movedAside(t, dir)) != 1 || s.Stats().ColdRowOnly != 0 {
		t.Fatalf("column file not moved aside and rewritten: %v %+v", movedAside(t, dir), s.Stats())
	}
	s.Close()
	s = open(t, dir, o)
	defer s.Close()
	if got, _ := s.Search(query(t, `src.namespace = "b-1"`, 100)); !reflect.DeepEqual(got, want) || s.Stats().ColdRowOnly != 0 {
		t.Fatalf("after the rewrite and reopen: %d flows, %+v", len(got), s.Stats())
	}
}

// Files are the store's own: 0700 directories, 0600 files, whatever the
// umask.
func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "flows")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	b := flow.Batch{Agent: "a", Observations: []flow.Observation{{Agent: "a", Seq: 1}}}
	if err := s.Log(&b); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]flow.Flow{testFlow(1, t0)}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); fi.IsDir() && perm != 0o700 || !fi.IsDir() && perm&0o077 != 0 {
			t.Errorf("%s: mode %v", p, perm)
		}
		return nil
	})
}
