package table

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// TestRepPagesMatchArrowGo writes list columns of rows of k values with
// some short, long, null and empty rows among them, in V1 and V2 data
// pages, dictionary and plain, small and large pages, and checks every
// column chunk read through a repPages against arrow-go's own reader:
// the same definition levels and values with the repetition levels left
// to repPages, the repetition levels fill gives equal to those arrow-go
// decodes, and wholeRows true only where those levels are whole rows
// (and everywhere they are, in a column without bad rows).
func TestRepPagesMatchArrowGo(t *testing.T) {
	for _, k := range []int{1, 3, 8, 64} {
		for _, bad := range []bool{false, true} {
			for _, v2 := range []bool{false, true} {
				for _, dict := range []bool{false, true} {
					for _, page := range []int64{64, 1 << 20} {
						name := fmt.Sprintf("k%d/bad=%t/v2=%t/dict=%t/page%d", k, bad, v2, dict, page)
						t.Run(name, func(t *testing.T) {
							path := writeListColumn(t, k, bad, v2, dict, page)
							pf, err := file.OpenParquetFile(path, false)
							if err != nil {
								t.Fatal(err)
							}
							defer pf.Close()
							for rg := range pf.NumRowGroups() {
								checkChunk(t, pf, rg, 0, k, bad)
							}
						})
					}
				}
			}
		}
	}
}

// TestRepPagesMatchArrowGoOnDuckDBFiles does the same on the files
// another writer made (testdata/README.md): DuckDB's, one with a short
// row.
func TestRepPagesMatchArrowGoOnDuckDBFiles(t *testing.T) {
	for _, name := range []string{"duckdb_pixels_v1.parquet", "duckdb_pixels_v2.parquet", "duckdb_pixels_short.parquet"} {
		t.Run(name, func(t *testing.T) {
			pf, err := file.OpenParquetFile(filepath.Join("..", "..", "testdata", name), false)
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()
			col := pf.MetaData().Schema.ColumnIndexByName("pixels.list.element")
			if col < 0 {
				t.Fatalf("no column pixels.list.element in %s", pf.MetaData().Schema)
			}
			for rg := range pf.NumRowGroups() {
				checkChunk(t, pf, rg, col, 64, strings.Contains(name, "short"))
			}
		})
	}
}

// TestRepPagesBoundWhatTheyKeep checks that a page breaking the rows
// with more levels than a repPages keeps is an error naming the page,
// not levels decoded into memory, and that a page within the bound is
// kept.
func TestRepPagesBoundWhatTheyKeep(t *testing.T) {
	path := writeListColumn(t, 8, true, false, true, 1<<20)
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	for _, keep := range []int64{100, maxKeptLevels} {
		p, err := newRepPages(pf, 0, 0, 8)
		if err != nil {
			t.Fatal(err)
		}
		p.keep = keep
		for p.Next() {
		}
		want := "levels hold rows of other lengths than 8 values"
		if keep == 100 && (p.Err() == nil || !strings.Contains(p.Err().Error(), want)) {
			t.Errorf("keep %d: error %v, want one saying %q", keep, p.Err(), want)
		}
		if keep == maxKeptLevels && (p.Err() != nil || len(p.pages) == 0 || p.pages[0].reps == nil) {
			t.Errorf("keep %d: error %v, %d pages: want the breaking page's levels kept", keep, p.Err(), len(p.pages))
		}
	}
}

// writeListColumn writes 700 rows (row groups of 300) of a nullable list
// of float32 column "v" whose rows hold k values, a few of them (when
// bad) k-1, k+1, null or empty.
func writeListColumn(t *testing.T, k int, bad, v2, dict bool, page int64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(k), 7))
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	lb := b.Field(0).(*array.ListBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	for range 700 {
		n := k
		if bad {
			switch rng.IntN(40) {
			case 0:
				n = k - 1
			case 1:
				n = k + 1
			case 2:
				lb.AppendNull()
				continue
			}
		}
		lb.Append(true)
		for range n {
			vb.Append(float32(rng.IntN(5)))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	version := parquet.DataPageV1
	if v2 {
		version = parquet.DataPageV2
	}
	return writeWith(t, rec, parquet.WithMaxRowGroupLength(300), parquet.WithDataPageVersion(version),
		parquet.WithDictionaryDefault(dict), parquet.WithDataPageSize(page))
}

// readAll reads every level of cr: values, definition levels and, when
// reps is true, repetition levels.
func readAll(t *testing.T, cr file.ColumnChunkReader, reps bool) ([]float32, []int16, []int16) {
	t.Helper()
	fr := cr.(*file.Float32ColumnChunkReader)
	var vals []float32
	var defs, rs []int16
	for fr.HasNext() {
		v, d, r := make([]float32, 100), make([]int16, 100), make([]int16, 100)
		if !reps {
			r = nil
		}
		lv, nv, err := fr.ReadBatch(100, v, d, r)
		if err != nil {
			t.Fatal(err)
		}
		vals, defs = append(vals, v[:nv]...), append(defs, d[:lv]...)
		if reps {
			rs = append(rs, r[:lv]...)
		}
	}
	if err := fr.Err(); err != nil {
		t.Fatal(err)
	}
	return vals, defs, rs
}

func checkChunk(t *testing.T, pf *file.Reader, rg, col, k int, bad bool) {
	t.Helper()
	cr, err := pf.RowGroup(rg).Column(col)
	if err != nil {
		t.Fatal(err)
	}
	wantVals, wantDefs, wantReps := readAll(t, cr, true)

	pages, err := newRepPages(pf, rg, col, k)
	if err != nil || pages == nil {
		t.Fatalf("row group %d: repPages %v, %v", rg, pages, err)
	}
	ours := file.NewColumnReader(pf.MetaData().Schema.Column(col), pages, memory.DefaultAllocator, pf.BufferPool())
	vals, defs, _ := readAll(t, ours, false)
	if !slices.Equal(vals, wantVals) || !slices.Equal(defs, wantDefs) {
		t.Fatalf("row group %d: values or definition levels differ from arrow-go's when repPages reads the repetition levels", rg)
	}
	reps := make([]int16, len(wantReps))
	pages.fill(reps, 0)
	if i := firstDiff(reps, wantReps); i >= 0 {
		t.Fatalf("row group %d: level %d: repetition level %d, arrow-go decodes %d", rg, i, reps[i], wantReps[i])
	}
	// wholeRows over ranges of 1, 2 and 8 rows starting at every row
	// boundary of the levels and one level after, and over every row.
	for from := 0; from < len(reps); from += k {
		for _, start := range []int{from, from + 1} {
			all := 0
			if from == 0 {
				all = len(reps) / k
			}
			for _, rows := range []int{1, 2, 8, all} {
				n := rows * k
				if rows == 0 || start+n > len(reps) {
					continue
				}
				want := true
				for i, v := range reps[start : start+n] {
					want = want && (v == 0) == (i%k == 0) && v <= 1
				}
				// Where a page breaks the rows wholeRows may say no for
				// a range of whole rows in it (the directColumn then
				// compares them level by level); it must never say yes
				// wrongly, and on a column of whole rows it says yes.
				got := pages.wholeRows(int64(start), int64(n))
				if (got && !want) || (!bad && got != want) {
					t.Fatalf("row group %d: wholeRows(%d, %d) = %t, want %t", rg, start, n, got, want)
				}
			}
		}
	}
}

func firstDiff(a, b []int16) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// FuzzRepLevels checks followsRows against decodeReps on any bytes: when
// followsRows finds the levels whole rows from a row's start, they
// decode, and stepping through the decoded levels agrees level by level
// and ends in the same state; when it finds they are not (without an
// error) and they decode, stepping through them finds a level that
// breaks the rows.
func FuzzRepLevels(f *testing.F) {
	f.Add([]byte{0x03, 0xfe, 0x70, 0x01}, uint8(64), uint16(64))      // one digits row: a bit-packed group, a run of 56 ones
	f.Add([]byte{0x05, 0xfe, 0xfe, 0x70, 0x01}, uint8(8), uint16(16)) // two rows of 8
	f.Add([]byte{0x02, 0x00, 0x06, 0x01}, uint8(4), uint16(4))        // RLE only: a 0, three 1s
	f.Add([]byte{0x04, 0x00}, uint8(1), uint16(2))                    // rows of one value
	f.Add([]byte{0x03, 0xee, 0x70, 0x01}, uint8(64), uint16(64))      // a 0 inside the row
	f.Add([]byte{0x03, 0xfe, 0x72, 0x01}, uint8(64), uint16(65))      // one value too many
	f.Add([]byte{0x03}, uint8(8), uint16(8))                          // truncated
	f.Fuzz(func(t *testing.T, data []byte, k uint8, n uint16) {
		if k == 0 || n == 0 {
			return
		}
		kk := int(k)
		state, ok, ferr := followsRows(data, int64(n), kk, kk)
		reps, derr := decodeReps(data, int64(n))
		if ok {
			if ferr != nil || derr != nil {
				t.Fatalf("followsRows says whole rows (err %v) but decodeReps fails: %v", ferr, derr)
			}
			s := kk
			for i, v := range reps {
				if (v == 0 && s != kk) || (v == 1 && s >= kk) || v > 1 {
					t.Fatalf("level %d (%d) breaks the rows at state %d, followsRows said whole", i, v, s)
				}
				s = nextState(s, v, kk)
			}
			if s != state {
				t.Fatalf("state %d after the levels, followsRows says %d", s, state)
			}
			return
		}
		if ferr != nil || derr != nil {
			return
		}
		s := kk
		for _, v := range reps {
			if (v == 0 && s != kk) || (v == 1 && s >= kk) || v > 1 {
				return
			}
			s = nextState(s, v, kk)
		}
		t.Fatalf("followsRows says the levels %v break the rows of %d; none does", reps, kk)
	})
}
