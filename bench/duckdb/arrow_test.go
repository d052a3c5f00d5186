//go:build duckdb_arrow

package duckdb

import (
	"database/sql/driver"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/palisade-dev/palisade/internal/flow"
)

// With -tags duckdb_arrow, SIDE_LOAD=arrow loads DuckDB in bulk: the
// flows go into Arrow record batches of arrowBatch rows (columnar, built
// in Go), each handed to DuckDB as a view through its Arrow interface and
// copied with one INSERT … SELECT. This is DuckDB's fast path for data
// that is already in memory, and what makes the 100 M-row comparison
// possible on this machine (the Appender takes ≈ 55 µs of CPU per row
// with this table's MAP and LIST columns).
func init() { loaders["arrow"] = newArrowLoader }

const arrowBatch = 200_000

func endpointFields(p string) []arrow.Field {
	s := arrow.BinaryTypes.String
	return []arrow.Field{
		{Name: p + "_ip", Type: s}, {Name: p + "_port", Type: arrow.PrimitiveTypes.Uint16},
		{Name: p + "_workload", Type: s}, {Name: p + "_kind", Type: s}, {Name: p + "_name", Type: s},
		{Name: p + "_namespace", Type: s}, {Name: p + "_labels", Type: arrow.MapOf(s, s)},
		{Name: p + "_owner_kind", Type: s}, {Name: p + "_owner_name", Type: s}, {Name: p + "_service", Type: s},
		{Name: p + "_node", Type: s},
	}
}

func arrowSchema() *arrow.Schema {
	s := arrow.BinaryTypes.String
	u64 := arrow.PrimitiveTypes.Uint64
	ts := &arrow.TimestampType{Unit: arrow.Microsecond}
	fs := []arrow.Field{{Name: "id", Type: s}, {Name: "mode", Type: s}, {Name: "proto", Type: s}}
	fs = append(fs, endpointFields("src")...)
	fs = append(fs, endpointFields("dst")...)
	fs = append(fs,
		arrow.Field{Name: "start_ts", Type: ts}, arrow.Field{Name: "end_ts", Type: ts},
		arrow.Field{Name: "fwd_packets", Type: u64}, arrow.Field{Name: "fwd_bytes", Type: u64},
		arrow.Field{Name: "rev_packets", Type: u64}, arrow.Field{Name: "rev_bytes", Type: u64},
		arrow.Field{Name: "conns", Type: u64},
		arrow.Field{Name: "flags", Type: arrow.ListOf(s)}, arrow.Field{Name: "replied", Type: arrow.FixedWidthTypes.Boolean},
		arrow.Field{Name: "points", Type: arrow.ListOf(s)}, arrow.Field{Name: "related_ids", Type: arrow.ListOf(s)},
		arrow.Field{Name: "related_reasons", Type: arrow.ListOf(s)}, arrow.Field{Name: "tunnel", Type: s})
	return arrow.NewSchema(fs, nil)
}

type arrowLoader struct {
	arrow *duckdb.Arrow
	exec  func(string) error
	b     *array.RecordBuilder
	n     int
}

func newArrowLoader(c driver.Conn, exec func(string) error) (loader, error) {
	a, err := duckdb.NewArrowFromConn(c)
	if err != nil {
		return nil, err
	}
	return &arrowLoader{arrow: a, exec: exec, b: array.NewRecordBuilder(memory.DefaultAllocator, arrowSchema())}, nil
}

func (l *arrowLoader) appendEndpoint(i int, e *flow.Endpoint) int {
	b := l.b
	str := func(j int, v string) { b.Field(j).(*array.StringBuilder).Append(v) }
	str(i, e.IP)
	b.Field(i + 1).(*array.Uint16Builder).Append(e.Port)
	str(i+2, e.Workload)
	str(i+3, e.Kind)
	str(i+4, e.Name)
	str(i+5, e.Namespace)
	mb := b.Field(i + 6).(*array.MapBuilder)
	mb.Append(true)
	kb, ib := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.StringBuilder)
	for k, v := range e.Labels {
		kb.Append(k)
		ib.Append(v)
	}
	ok, on := "", ""
	if e.Owner != nil {
		ok, on = e.Owner.Kind, e.Owner.Name
	}
	str(i+7, ok)
	str(i+8, on)
	str(i+9, e.Service)
	str(i+10, e.Node)
	return i + 11
}

// listValues starts a list in b and returns the builder of its values.
func listValues(b array.Builder) *array.StringBuilder {
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	return lb.ValueBuilder().(*array.StringBuilder)
}

func appendList(b array.Builder, vs []string) {
	vb := listValues(b)
	for _, v := range vs {
		vb.Append(v)
	}
}

func (l *arrowLoader) Append(fs []flow.Flow) error {
	b := l.b
	for k := range fs {
		f := &fs[k]
		b.Field(0).(*array.StringBuilder).Append(f.ID)
		b.Field(1).(*array.StringBuilder).Append(f.Mode)
		b.Field(2).(*array.StringBuilder).Append(f.Proto)
		i := l.appendEndpoint(3, &f.Src)
		i = l.appendEndpoint(i, &f.Dst)
		b.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(f.Start.UnixMicro()))
		b.Field(i + 1).(*array.TimestampBuilder).Append(arrow.Timestamp(f.End.UnixMicro()))
		for j, v := range []uint64{f.FwdPackets, f.FwdBytes, f.RevPackets, f.RevBytes, f.Conns} {
			b.Field(i + 2 + j).(*array.Uint64Builder).Append(v)
		}
		appendList(b.Field(i+7), f.Flags)
		b.Field(i + 8).(*array.BooleanBuilder).Append(f.Replied)
		points := listValues(b.Field(i + 9))
		for _, p := range f.Points {
			points.Append(p.Node + "/" + p.Interface)
		}
		ids, reasons := listValues(b.Field(i+10)), listValues(b.Field(i+11))
		for _, r := range f.Related {
			ids.Append(r.ID)
			reasons.Append(r.Reason)
		}
		b.Field(i + 12).(*array.StringBuilder).Append(f.Tunnel)
		l.n++
	}
	if l.n >= arrowBatch {
		return l.Flush()
	}
	return nil
}

// Flush hands the rows built so far to DuckDB as one record batch.
func (l *arrowLoader) Flush() error {
	if l.n == 0 {
		return nil
	}
	rec := l.b.NewRecordBatch()
	defer rec.Release()
	l.n = 0
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		return err
	}
	defer rdr.Release()
	release, err := l.arrow.RegisterView(rdr, "side_batch")
	if err != nil {
		return fmt.Errorf("register arrow view: %w", err)
	}
	defer release()
	return l.exec(`INSERT INTO flows SELECT * FROM side_batch`)
}

func (l *arrowLoader) Close() error {
	err := l.Flush()
	l.b.Release()
	return err
}
