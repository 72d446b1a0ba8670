package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// repPages is the page reader under a directColumn's column chunk reader.
// It hands arrow-go the pages unchanged and checks each data page's
// repetition levels against the rows of a tensor column (a 0 starting
// each row, then k-1 ones) run by run, straight from the page's
// RLE/bit-packed encoding. The directColumn then reads values and
// definition levels only: decoding the repetition levels level by level
// into int16s was a quarter of `score`'s CPU on the digits input (64
// levels per row in two runs, a bit-packed group and an RLE run).
//
// The levels of a page that does not match are decoded and kept, and
// those of a page that matches follow from the pattern, so that levels
// (fill) can hand the directColumn the levels arrow-go would have, and
// it reports a wrong row exactly as before.
type repPages struct {
	file.PageReader
	keep   int64 // the most levels of a page breaking the pattern it decodes and keeps
	k      int   // values per row
	state  int   // values of the row being read after the pages seen (1..k; k: the next level starts a row; k+1: too many)
	levels int64 // levels in the pages seen
	pages  []repPage
	err    error
}

// repPage is one data page's repetition levels.
type repPage struct {
	start int64   // the chunk's level its first level is
	n     int64   // its levels
	state int     // repPages.state before its first level
	reps  []int16 // its levels when they break the pattern; nil when they follow it
}

// errLevels reports a page whose repetition levels cannot be read.
var errLevels = errors.New("corrupt repetition levels")

// maxKeptLevels bounds the levels of one page that breaks a tensor's
// rows that a repPages decodes and keeps (2 bytes each) so that the
// directColumn can name the wrong row. A larger page is an error at once:
// its level count comes from its header, and a few bytes of RLE can
// claim billions of levels.
const maxKeptLevels = 1 << 22

// newRepPages returns the page reader of chunk column col of row group
// rg, or nil when a page of it may hold levels in the deprecated
// BIT_PACKED encoding (then the directColumn has arrow-go decode them).
func newRepPages(f *file.Reader, rg, col, k int) (*repPages, error) {
	md, err := f.MetaData().RowGroup(rg).ColumnChunk(col)
	if err != nil {
		return nil, err
	}
	if slices.Contains(md.Encodings(), parquet.Encodings.BitPacked) {
		return nil, nil
	}
	pr, err := f.RowGroup(rg).GetColumnPageReader(col)
	if err != nil {
		return nil, err
	}
	return &repPages{PageReader: pr, keep: maxKeptLevels, k: k, state: k}, nil
}

// Next moves to the next page and, for a data page, checks its levels.
func (p *repPages) Next() bool {
	if p.err != nil || !p.PageReader.Next() {
		return false
	}
	var levels []byte
	switch pg := p.PageReader.Page().(type) {
	case *file.DataPageV1:
		d := pg.Data()
		if pg.RepetitionLevelEncoding() != parquet.Encodings.RLE || len(d) < 4 {
			p.err = fmt.Errorf("data page %d: %w (encoding %s, %d bytes)", len(p.pages), errLevels, pg.RepetitionLevelEncoding(), len(d))
			return false
		}
		n := binary.LittleEndian.Uint32(d)
		if uint64(n) > uint64(len(d)-4) {
			p.err = fmt.Errorf("data page %d: %w (%d bytes of levels in a page of %d)", len(p.pages), errLevels, n, len(d))
			return false
		}
		levels = d[4 : 4+n]
	case *file.DataPageV2:
		d, n := pg.Data(), pg.RepetitionLevelByteLen()
		if n < 0 || int(n) > len(d) {
			p.err = fmt.Errorf("data page %d: %w (%d bytes of levels in a page of %d)", len(p.pages), errLevels, n, len(d))
			return false
		}
		levels = d[:n]
	default:
		return true // a dictionary page
	}
	n := int64(p.PageReader.Page().NumValues())
	page := repPage{start: p.levels, n: n, state: p.state}
	state, ok, err := followsRows(levels, n, p.k, p.state)
	if err == nil && !ok && n > p.keep {
		err = fmt.Errorf("its %d levels hold rows of other lengths than %d values (too many levels to find which)", n, p.k)
	}
	if err == nil && !ok {
		page.reps, err = decodeReps(levels, n)
		state = p.state
		for _, v := range page.reps {
			state = nextState(state, v, p.k)
		}
	}
	if err != nil {
		p.err = fmt.Errorf("data page %d: %w", len(p.pages), err)
		return false
	}
	p.state, p.levels = state, p.levels+n
	p.pages = append(p.pages, page)
	return true
}

// Err returns the error that ended Next.
func (p *repPages) Err() error {
	if p.err != nil {
		return p.err
	}
	return p.PageReader.Err()
}

// nextState is state after a level of value v.
func nextState(state int, v int16, k int) int {
	if v == 0 {
		return 1
	}
	return min(state+1, k+1)
}

// followsRows walks n repetition levels of bit width 1 in levels (the
// RLE/bit-packed hybrid encoding) from state and reports whether they
// follow the rows' pattern, and the state after them when they do.
func followsRows(levels []byte, n int64, k, state int) (int, bool, error) {
	for n > 0 {
		h, w := binary.Uvarint(levels)
		if w <= 0 {
			return 0, false, fmt.Errorf("%w: %d levels missing", errLevels, n)
		}
		levels = levels[w:]
		if h&1 == 0 { // an RLE run: a count, then the value in one byte
			cnt := int64(min(h>>1, uint64(n)))
			if cnt == 0 || len(levels) < 1 {
				return 0, false, fmt.Errorf("%w: an empty or truncated run", errLevels)
			}
			v := levels[0]
			levels = levels[1:]
			n -= cnt
			switch {
			case v == 0 && state == k && (cnt == 1 || k == 1):
				state = 1
			case v == 1 && state+int(min(cnt, int64(k))) <= k:
				state += int(cnt)
			default:
				return 0, false, nil
			}
			continue
		}
		groups := h >> 1 // bit-packed: groups of 8 levels, one byte each
		if groups == 0 || uint64(len(levels)) < groups {
			return 0, false, fmt.Errorf("%w: a truncated bit-packed run", errLevels)
		}
		cnt := int64(min(groups*8, uint64(n)))
		n -= cnt
		for _, b := range levels[:(cnt+7)/8] {
			m := int(min(cnt, 8))
			cnt -= int64(m)
			switch {
			case m == 8 && b == 0xff && state+8 <= k:
				state += 8
			case m == 8 && b == 0xfe && state == k && k >= 8:
				state = 8
			default:
				for j := range m {
					if b>>j&1 == 0 {
						if state != k {
							return 0, false, nil
						}
						state = 1
					} else {
						if state >= k {
							return 0, false, nil
						}
						state++
					}
				}
			}
		}
		levels = levels[groups:]
	}
	return state, true, nil
}

// decodeReps decodes n repetition levels of bit width 1. It parses runs
// as followsRows does; a shared run reader made the hot walk 12 % slower.
func decodeReps(levels []byte, n int64) ([]int16, error) {
	out := make([]int16, 0, n)
	for int64(len(out)) < n {
		h, w := binary.Uvarint(levels)
		if w <= 0 {
			return nil, fmt.Errorf("%w: %d levels missing", errLevels, n-int64(len(out)))
		}
		levels = levels[w:]
		left := n - int64(len(out))
		if h&1 == 0 {
			cnt := int64(min(h>>1, uint64(left)))
			if cnt == 0 || len(levels) < 1 {
				return nil, fmt.Errorf("%w: an empty or truncated run", errLevels)
			}
			out = append(out, slices.Repeat([]int16{int16(levels[0])}, int(cnt))...)
			levels = levels[1:]
			continue
		}
		groups := h >> 1
		if groups == 0 || uint64(len(levels)) < groups {
			return nil, fmt.Errorf("%w: a truncated bit-packed run", errLevels)
		}
		cnt := min(groups*8, uint64(left))
		for i := range cnt {
			out = append(out, int16(levels[i/8]>>(i%8)&1))
		}
		levels = levels[groups:]
	}
	return out, nil
}

// stateAt is the state before level at of the chunk, and the page
// holding it (nil when no page seen does).
func (p *repPages) stateAt(at int64) (int, *repPage) {
	for i := range p.pages {
		pg := &p.pages[i]
		if at < pg.start || at >= pg.start+pg.n {
			continue
		}
		if pg.reps != nil {
			s := pg.state
			for _, v := range pg.reps[:at-pg.start] {
				s = nextState(s, v, p.k)
			}
			return s, pg
		}
		return int((int64(pg.state)-1+at-pg.start)%int64(p.k)) + 1, pg
	}
	return 0, nil
}

// wholeRows reports whether the n levels from the chunk's level from
// are whole rows of k values: every page holding them follows the
// pattern, and the first starts a row.
func (p *repPages) wholeRows(from, n int64) bool {
	if n%int64(p.k) != 0 {
		return false
	}
	if s, _ := p.stateAt(from); s != p.k {
		return false
	}
	for _, pg := range p.pages {
		if pg.start < from+n && pg.start+pg.n > from && pg.reps != nil {
			return false
		}
	}
	return true
}

// fill writes the repetition levels of the chunk's levels from
// from+len(dst)-1 into dst, as arrow-go would have decoded them.
func (p *repPages) fill(dst []int16, from int64) {
	for len(dst) > 0 {
		s, pg := p.stateAt(from)
		if pg == nil {
			return // not read: nothing reads these levels
		}
		m := min(int64(len(dst)), pg.start+pg.n-from)
		if pg.reps != nil {
			copy(dst[:m], pg.reps[from-pg.start:])
		} else {
			for i := range dst[:m] {
				dst[i] = 0
				if s != p.k {
					dst[i] = 1
				}
				s = s%p.k + 1
			}
		}
		dst, from = dst[m:], from+m
	}
}

// forget drops the pages before the chunk's level at: nothing reads
// their levels again.
func (p *repPages) forget(at int64) {
	i := 0
	for i < len(p.pages) && p.pages[i].start+p.pages[i].n <= at {
		i++
	}
	p.pages = p.pages[i:]
}
