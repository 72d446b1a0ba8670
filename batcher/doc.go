// Package batcher is jetinfer's shape-aware dynamic batcher: it decides
// which queued rows run together, padded to which shape, under which
// optimization profile, and when. It is pure: no I/O, no goroutines, no
// clock of its own. Every method that depends on time takes the current
// time as an argument, so the same calls with the same times yield the
// same plans.
//
// # Vocabulary
//
// An Item is one request's rows; each row may have a length along the
// engine's sequence dimension (the one dynamic non-batch dimension of its
// inputs, e.g. x [batch, seq, 16] and mask [batch, seq]). A Plan is one
// batch: a profile, a padded shape (Batch, Seq) and Slots that map item
// rows to batch rows. Rows are bucketed by padded length (Buckets: a
// ladder with steps of Config.BucketRatio, or Config.Buckets) and a batch
// is built from the longest rows at or below one bucket, so similar
// lengths travel together. An item's rows may be spread over several plans
// (it is larger than a batch, or its rows differ in length); an Assembler
// puts the output rows back in item order, and Input.Gather builds the
// padded input tensors, mask and length inputs included.
//
// # Cost model
//
// A CostModel gives the engine latency of every (profile, batch, seq)
// shape, interpolated from a grid measured on the real engine by Measure
// (the worker passes a function that times one run), made monotone, plus
// the cost of switching profiles. It is saved with MarshalJSON and
// restored with ParseCostModel. No latency is typed in by hand. From it
// the batcher derives, per bucket, the ideal cost of a row: the least
// latency per row over all profiles and batch sizes at that length. A
// candidate batch's efficiency is the ideal cost of its rows over its
// predicted latency: 1 means the rows run as cheaply as they ever could.
//
// # Policy
//
// Within a bucket rows are ordered by deadline (earliest first, none
// last), then priority (highest first), then due time and admission. An
// item is due once it has waited Config.MaxDelay, or earlier when its
// deadline leaves little more than its own run plus one full batch. Next
// then picks:
//
//   - When a deadline item is due, or when the queued deadline items
//     served earliest-deadline-first (each needing its rows' ideal cost,
//     plus Config.CostMargin) leave less slack than one full batch: a
//     batch anchored on the earliest deadline.
//   - Else, when an item is due: a batch anchored on the most urgent due
//     item (priority, then due time). An anchored batch carries the
//     anchor's rows of its longest bucket and is filled with the rows
//     that make it most efficient.
//   - Else, the most efficient batch whose efficiency has reached
//     1 - age/MaxDelay (age: its oldest row's wait), preferring higher
//     priority: a batch that is already as efficient as it can be goes at
//     once, a poor one waits for company at most MaxDelay. NextWakeup says
//     when the next batch becomes eligible.
//
// Every candidate respects: the profile's maximum batch and sequence length
// (lengths below a profile's minimum are padded up to it); the padding cap
// Config.MaxPadding (a batch of one item's rows of one bucket excepted);
// the deadlines of the rows it carries (predicted end, with the margin);
// and the slack of the queued deadline items it does not carry. An item
// that cannot finish by its deadline even run alone now is removed and
// reported by Expired, never run.
//
// # Driving it from a worker
//
// One goroutine owns a Batcher and an Assembler (or hands plans to
// executors and takes their outputs back over channels):
//
//	on request:  b.Add(now, item); asm.Add(item)
//	             ErrInvalidItem → INVALID_ARGUMENT; ErrQueueFull → stop pulling, retry
//	loop, whenever an engine slot is free (after Add, after a batch, on the timer):
//	    for id in b.Expired(now): asm.Drop(id); answer DEADLINE_EXCEEDED
//	    plan, ok := b.Next(now); if !ok: break
//	    for in in b.Inputs(): in.Gather(buf[in], plan, source)   // worker-owned buffers
//	    engine.Run(plan.Profile, inputs) → outputs
//	    done, err := asm.Scatter(plan, outputs); for id in done: asm.Take(id) → publish
//	timer:       if t, ok := b.NextWakeup(); ok { timer.Reset(t.Sub(now)) }
//	batch fails: for each slot item: b.Remove(id), asm.Drop(id), answer or retry it
//	drain:       plan, ok := b.Flush(now) until !ok
//
// Next assumes the plan starts now; call it only when an engine slot can
// take the batch. Plans, Inputs and Results are independent values owned
// by the caller. No type in this package is safe for concurrent use,
// except CostModel, which is immutable after construction and may be
// shared.
package batcher
