package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// EngineTimer returns a batcher.RunFunc that times one call of eng on a
// batch of the given profile, batch size and sequence length (every
// dynamic non-batch dimension set to seq), with deterministic non-zero
// inputs. It is what the worker measures its cost model with at warm-up.
func EngineTimer(eng Engine) batcher.RunFunc {
	spec := eng.Spec()
	bufs := map[trt.DType][]byte{}
	data := func(d trt.DType, n int) []byte {
		b := bufs[d]
		for i := len(b); len(b) < n; i++ {
			v := float64(i%17)/17 - 0.5
			switch d {
			case trt.Float32:
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
			case trt.Float64:
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			case trt.Float16:
				b = append(b, 0x00, 0x38) // 0.5
			case trt.BFloat16:
				b = append(b, 0x00, 0x3f) // 0.5
			default:
				b = append(b, 1)
				b = append(b, make([]byte, d.Size()-1)...)
			}
		}
		bufs[d] = b
		return b[:n:n]
	}
	return func(ctx context.Context, profile, batch, seq int) (time.Duration, error) {
		b := &trt.Batch{Profile: profile}
		for _, in := range spec.Inputs {
			sh := concreteShape(in.Shape, batch, seq)
			n, err := trt.ByteSize(in.DType, sh)
			if err != nil {
				return 0, fmt.Errorf("sizing input %q: %w", in.Name, err)
			}
			b.Inputs = append(b.Inputs, trt.Tensor{Name: in.Name, DType: in.DType, Shape: sh, Data: data(in.DType, n)})
		}
		for _, out := range spec.Outputs {
			b.Outputs = append(b.Outputs, trt.Tensor{Name: out.Name, DType: out.DType})
		}
		start := time.Now()
		if err := eng.Run(ctx, b); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}

// concreteShape sets the batch dimension of pattern to batch and every
// other dynamic dimension to seq.
func concreteShape(pattern trt.Shape, batch, seq int) trt.Shape {
	sh := pattern.Clone()
	sh[0] = int64(batch)
	for d := 1; d < len(sh); d++ {
		if sh[d] == trt.Dynamic {
			sh[d] = int64(seq)
		}
	}
	return sh
}

// batcherSpec is the engine spec as the batcher sees it: every profile's
// max batch capped at maxRows.
func batcherSpec(s trt.Spec, maxRows int) trt.Spec {
	out := s
	out.Profiles = make([]trt.Profile, len(s.Profiles))
	for i, p := range s.Profiles {
		q := trt.Profile{Min: p.Min, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
		for name, sh := range p.Max {
			c := sh.Clone()
			c[0] = min(c[0], int64(maxRows))
			q.Max[name] = c
		}
		for name, sh := range p.Opt {
			c := sh.Clone()
			c[0] = min(c[0], int64(maxRows))
			q.Opt[name] = c
		}
		out.Profiles[i] = q
	}
	return out
}

// requestSpec is the spec requests are validated against: the engine's
// inputs without those the batcher generates (masks, lengths).
func requestSpec(s trt.Spec, generated []string) trt.Spec {
	out := s
	out.Inputs = slices.DeleteFunc(slices.Clone(s.Inputs), func(t trt.TensorDesc) bool { return slices.Contains(generated, t.Name) })
	out.Profiles = make([]trt.Profile, len(s.Profiles))
	for i, p := range s.Profiles {
		q := trt.Profile{Min: map[string]trt.Shape{}, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
		for _, in := range out.Inputs {
			q.Min[in.Name], q.Opt[in.Name], q.Max[in.Name] = p.Min[in.Name], p.Opt[in.Name], p.Max[in.Name]
		}
		out.Profiles[i] = q
	}
	return out
}

// generatedInputs returns the mask and length inputs the batcher fills:
// those named in the config, or, when none are named, the inputs called
// "mask" or "attention_mask" with shape [batch, seq].
func generatedInputs(s trt.Spec, masks, lengths []string) ([]string, []string) {
	if len(masks) > 0 || len(lengths) > 0 {
		return masks, lengths
	}
	for _, in := range s.Inputs {
		if (in.Name == "mask" || in.Name == "attention_mask") && len(in.Shape) == 2 && in.Shape[1] == trt.Dynamic {
			masks = append(masks, in.Name)
		}
	}
	return masks, nil
}

// loadCostModel reads the cost model saved at path, or measures one on
// eng and saves it there. A saved model measured for another engine spec
// is measured again. path "" measures without saving.
func (w *Worker) loadCostModel(ctx context.Context, eng Engine, path string, spec trt.Spec, cfg batcher.Config) (*batcher.CostModel, error) {
	if p := path; p != "" {
		b, err := os.ReadFile(p)
		if err == nil {
			m, err := batcher.ParseCostModel(b)
			if err == nil {
				if _, err = batcher.New(spec, m, cfg); err == nil {
					w.log.Info("cost model loaded", "model", w.cfg.Model, "path", p)
					return m, nil
				}
			}
			w.log.Warn("saved cost model not usable; measuring again", "path", p, "err", err)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading cost model: %w", err)
		}
	}
	grid, err := batcher.DefaultGrid(spec, 24)
	if err != nil {
		return nil, fmt.Errorf("planning cost measurement: %w", err)
	}
	grid.Reps = 3
	start := time.Now()
	// A transient engine error should not stop the worker at start-up:
	// measure up to three times before giving up.
	var m *batcher.CostModel
	for attempt := 1; ; attempt++ {
		if m, err = batcher.Measure(ctx, EngineTimer(eng), grid); err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return nil, fmt.Errorf("measuring engine cost model (%d attempts): %w", attempt, err)
		}
		w.log.Warn("measuring engine cost model; retrying", "model", w.cfg.Model, "attempt", attempt, "err", err)
	}
	w.log.Info("cost model measured", "model", w.cfg.Model, "shapes", grid.Points(), "took", time.Since(start))
	if p := path; p != "" {
		b, err := m.MarshalJSON()
		if err == nil {
			err = os.WriteFile(p, b, 0o644)
		}
		if err != nil {
			w.log.Warn("saving cost model", "path", p, "err", err)
		}
	}
	return m, nil
}
