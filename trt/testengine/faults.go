package testengine

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
)

// FailFirst fails the first n calls with err.
func FailFirst(n int64, err error) Fault {
	return func(_ context.Context, c Call) error {
		if c.N <= n {
			return err
		}
		return nil
	}
}

// FailCall fails call number n (from 1) with err, and no other.
func FailCall(n int64, err error) Fault {
	return func(_ context.Context, c Call) error {
		if c.N == n {
			return err
		}
		return nil
	}
}

// FailRows fails every call whose batch holds a row for which match
// returns true (a poison row), with err naming the row.
func FailRows(match func(row []float32) bool, err error) Fault {
	return func(_ context.Context, c Call) error {
		in := c.Batch.Inputs[0]
		rows := int(in.Shape[0])
		if rows == 0 {
			return nil
		}
		per := len(in.Data) / 4 / rows
		row := make([]float32, per)
		for r := range rows {
			for i := range row {
				row[i] = math.Float32frombits(binary.LittleEndian.Uint32(in.Data[4*(r*per+i):]))
			}
			if match(row) {
				return fmt.Errorf("row %d: %w", r, err)
			}
		}
		return nil
	}
}

// FirstValue returns a match for FailRows: rows whose first value is v.
func FirstValue(v float32) func(row []float32) bool {
	return func(row []float32) bool { return len(row) > 0 && row[0] == v }
}

// Block holds every call until release is closed (then the call computes)
// or the call's context ends (then it fails with the context's error).
// With Stats().Running a test sees how many calls it holds.
func Block(release <-chan struct{}) Fault {
	return func(ctx context.Context, _ Call) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
