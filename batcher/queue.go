package batcher

import "slices"

// chunkCap bounds the entries of one chunk of a sortedList: an insertion
// or removal inside the list moves at most this many entries.
const chunkCap = 256

// sortedList is a sequence kept in ascending order by cmp, stored as
// non-empty chunks of at most chunkCap entries. Appending in order and
// removing from the front are O(1) amortized; inserting or removing
// elsewhere costs a binary search over chunks plus moving at most chunkCap
// entries (and, on a split, chunk headers). The planner walks it from the
// front with a cursor, so planning never touches the rows it leaves
// queued.
type sortedList[T any] struct {
	chunks [][]T // each keeps its own backing array of chunkCap entries
	spare  []T   // an emptied chunk kept for reuse (len 0)
	n      int
	cmp    func(a, b T) int
}

// cursor is a position in a sortedList: entry i of chunk c. A cursor is
// valid only until the list changes.
type cursor struct{ c, i int }

func newSortedList[T any](cmp func(a, b T) int) sortedList[T] {
	return sortedList[T]{cmp: cmp}
}

// Len returns the number of entries.
func (s *sortedList[T]) Len() int { return s.n }

// valid reports whether c points at an entry.
func (s *sortedList[T]) valid(c cursor) bool { return c.c < len(s.chunks) }

// at returns the entry at c, which must be valid.
func (s *sortedList[T]) at(c cursor) T { return s.chunks[c.c][c.i] }

// next returns the cursor after c.
func (s *sortedList[T]) next(c cursor) cursor {
	c.i++
	if c.i == len(s.chunks[c.c]) {
		return cursor{c.c + 1, 0}
	}
	return c
}

// last returns the greatest entry; the list must not be empty.
func (s *sortedList[T]) last() T {
	ch := s.chunks[len(s.chunks)-1]
	return ch[len(ch)-1]
}

// insert adds v in order; entries equal to v stay before it.
func (s *sortedList[T]) insert(v T) {
	s.n++
	if len(s.chunks) == 0 || s.cmp(s.last(), v) <= 0 {
		if len(s.chunks) == 0 || len(s.chunks[len(s.chunks)-1]) >= chunkCap {
			s.chunks = append(s.chunks, append(s.newChunk(), v))
			return
		}
		i := len(s.chunks) - 1
		s.chunks[i] = append(s.chunks[i], v)
		return
	}
	// The first chunk whose last entry is greater than v takes it.
	ci, _ := slices.BinarySearchFunc(s.chunks, v, func(ch []T, v T) int {
		if s.cmp(ch[len(ch)-1], v) <= 0 {
			return -1
		}
		return 1
	})
	ch := s.chunks[ci]
	j, _ := slices.BinarySearchFunc(ch, v, func(e, v T) int {
		if s.cmp(e, v) <= 0 {
			return -1
		}
		return 1
	})
	if len(ch) < chunkCap {
		s.chunks[ci] = slices.Insert(ch, j, v)
		return
	}
	// Split the full chunk in two halves, then insert into one of them.
	h := len(ch) / 2
	right := append(s.newChunk(), ch[h:]...)
	clear(ch[h:])
	left := ch[:h]
	if j <= h {
		left = slices.Insert(left, j, v)
	} else {
		right = slices.Insert(right, j-h, v)
	}
	s.chunks[ci] = left
	s.chunks = slices.Insert(s.chunks, ci+1, right)
}

// newChunk returns an empty chunk with room for chunkCap entries.
func (s *sortedList[T]) newChunk() []T {
	if ch := s.spare; ch != nil {
		s.spare = nil
		return ch
	}
	return make([]T, 0, chunkCap)
}

// recycle keeps an emptied chunk for reuse.
func (s *sortedList[T]) recycle(ch []T) {
	clear(ch)
	s.spare = ch[:0]
}

// search returns the cursor of the first entry not less than v.
func (s *sortedList[T]) search(v T) cursor {
	ci, _ := slices.BinarySearchFunc(s.chunks, v, func(ch []T, v T) int {
		if s.cmp(ch[len(ch)-1], v) < 0 {
			return -1
		}
		return 1
	})
	if ci == len(s.chunks) {
		return cursor{ci, 0}
	}
	j, _ := slices.BinarySearchFunc(s.chunks[ci], v, s.cmp)
	return cursor{ci, j}
}

// popFrontWhile removes entries from the front while drop holds.
func (s *sortedList[T]) popFrontWhile(drop func(T) bool) {
	for len(s.chunks) > 0 {
		ch := s.chunks[0]
		i := 0
		for i < len(ch) && drop(ch[i]) {
			i++
		}
		s.n -= i
		if i < len(ch) {
			// Shift the rest down so that the chunk keeps its backing
			// array (at most chunkCap entries move).
			m := copy(ch, ch[i:])
			clear(ch[m:])
			s.chunks[0] = ch[:m]
			return
		}
		s.recycle(ch)
		s.chunks[0] = nil
		s.chunks = s.chunks[1:]
	}
}

// removeRun removes the consecutive entries for which drop holds,
// starting at the first entry not less than from.
func (s *sortedList[T]) removeRun(from T, drop func(T) bool) {
	c := s.search(from)
	for c.c < len(s.chunks) {
		ch := s.chunks[c.c]
		j := c.i
		for j < len(ch) && drop(ch[j]) {
			j++
		}
		if j == c.i {
			return
		}
		s.n -= j - c.i
		if c.i == 0 && j == len(ch) {
			s.recycle(ch)
			s.chunks[c.c] = nil
			s.chunks = slices.Delete(s.chunks, c.c, c.c+1)
			continue // the run may go on in the next chunk, now at c.c
		}
		s.chunks[c.c] = slices.Delete(ch, c.i, j) // clears the vacated tail
		if j < len(ch) {
			return
		}
		c = cursor{c.c + 1, 0}
	}
}

// itemHeap is a binary min-heap of items under less that records each
// item's position (item.hpos[slot]), so that an item can be removed or
// re-sorted in O(log n).
type itemHeap struct {
	xs   []*item
	less func(a, b *item) bool
	slot int
}

func (h *itemHeap) top() *item {
	if len(h.xs) == 0 {
		return nil
	}
	return h.xs[0]
}

func (h *itemHeap) contains(x *item) bool { return x.hpos[h.slot] >= 0 }

func (h *itemHeap) push(x *item) {
	x.hpos[h.slot] = len(h.xs)
	h.xs = append(h.xs, x)
	h.up(len(h.xs) - 1)
}

// remove takes x out of the heap if it is there.
func (h *itemHeap) remove(x *item) {
	i := x.hpos[h.slot]
	if i < 0 {
		return
	}
	n := len(h.xs) - 1
	if i != n {
		h.swap(i, n)
	}
	h.xs[n] = nil
	h.xs = h.xs[:n]
	x.hpos[h.slot] = -1
	if i != n {
		h.fix(i)
	}
}

// update restores the order after x's key changed.
func (h *itemHeap) update(x *item) {
	if i := x.hpos[h.slot]; i >= 0 {
		h.fix(i)
	}
}

func (h *itemHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *itemHeap) swap(i, j int) {
	h.xs[i], h.xs[j] = h.xs[j], h.xs[i]
	h.xs[i].hpos[h.slot] = i
	h.xs[j].hpos[h.slot] = j
}

func (h *itemHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(h.xs[j], h.xs[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *itemHeap) down(i0 int) bool {
	i, n := i0, len(h.xs)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h.less(h.xs[r], h.xs[j]) {
			j = r
		}
		if !h.less(h.xs[j], h.xs[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
