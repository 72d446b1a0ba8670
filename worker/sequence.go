package worker

import (
	"fmt"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// This file holds what the worker does for sequence models beyond the
// batcher's padding: which inputs it fills itself, the per-row length
// checks that name the column, and ragged results.

// filledInputs maps each engine input the worker generates (attention
// masks, sequence lengths) to its kind, for validation errors that tell
// a producer not to send it.
func (g *generation) filledInputs() map[string]string {
	var out map[string]string
	for name, in := range g.inputs {
		if in.Kind != batcher.KindData {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = in.Kind.String()
		}
	}
	return out
}

// seqLimits returns the shortest and longest row the batcher accepts: 0
// positions when a generated mask or length input marks a row as padding
// (1 otherwise), and the longest padded length.
func (g *generation) seqLimits() (lo, hi int) {
	lo = 1
	for _, in := range g.inputs {
		if in.Kind != batcher.KindData {
			lo = 0
		}
	}
	if bs := g.batcher.Buckets(); len(bs) > 0 {
		hi = bs[len(bs)-1]
	}
	return lo, hi
}

// seqProblem checks r's per-row sequence lengths before they reach the
// batcher, so that a rejection names the column, the row and the limit
// rather than the batcher's internal item number. It returns "" when
// every row fits. It is called by the schedule goroutine (it reads g's
// batcher).
func (g *generation) seqProblem(r *request) string {
	if r.seqLens == nil {
		return ""
	}
	lo, hi := g.seqLimits()
	first := ""
	for _, desc := range g.reqSpec.Inputs {
		in := g.inputs[desc.Name]
		if !in.Ragged() {
			continue
		}
		rows := r.columns[desc.Name]
		if first == "" {
			first = desc.Name
		}
		for i, want := range r.seqLens {
			n := int(rows.Offsets[i+1] - rows.Offsets[i])
			switch {
			case n != want:
				return fmt.Sprintf("column %q row %d has %d positions but column %q has %d; sequence inputs must agree row by row",
					desc.Name, i, n, first, want)
			case n < lo:
				return fmt.Sprintf("column %q row %d has 0 positions; this model has no generated mask or length input, "+
					"so it cannot tell an empty row from padding: rows need at least %d position", desc.Name, i, lo)
			case n > hi:
				return fmt.Sprintf("column %q row %d has %d positions, longer than the longest batch the worker builds (%d)",
					desc.Name, i, n, hi)
			}
		}
	}
	return ""
}

// resultTensor turns one output of a request's assembled rows into the
// tensor its result column is encoded from. A ragged output (one whose
// dynamic dimension follows the rows' sequence lengths) keeps only its
// real positions and becomes a ragged tensor: shape [rows, Dynamic,
// dims...] with the assembler's offsets.
func resultTensor(part batcher.Result) (trt.Tensor, error) {
	t := trt.Tensor{Name: part.Name, DType: part.DType, Shape: part.Shape, Data: part.Data}
	if part.Offsets == nil {
		return t, nil
	}
	if len(part.Shape) < 2 || part.Shape[1] != trt.Dynamic {
		return trt.Tensor{}, fmt.Errorf("output %q has shape %v: a per-row sequence length is returned only for a dimension right after the batch dimension", part.Name, part.Shape)
	}
	t.Offsets = part.Offsets
	return t, nil
}
