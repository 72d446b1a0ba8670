package batcher

import "errors"

// Errors returned by Add. Match them with errors.Is.
var (
	// ErrInvalidItem marks an item that can never be batched: no rows,
	// sequence lengths missing or outside every profile, a duplicate ID.
	// The worker answers it with INVALID_ARGUMENT.
	ErrInvalidItem = errors.New("invalid batcher item")
	// ErrQueueFull is returned when accepting the item would exceed
	// Config.MaxQueueRows. It is transient: stop pulling and retry later.
	ErrQueueFull = errors.New("batcher queue full")
	// ErrCostMismatch is returned by New when the cost model was measured
	// for a different engine (other profiles or ranges): measure again.
	ErrCostMismatch = errors.New("cost model does not match engine")
)
