package scheduler

import (
	"encoding/json"
	"fmt"
	"time"
)

// HintValueLocation is the GJSON path of the replica count in a Hint's JSON,
// the valueLocation of a KEDA metrics-api trigger.
const HintValueLocation = "desiredReplicas"

// Hint is the scheduler's advice for one model: the JSON served at
// GET /v1/models/{model}/hint and stored in the hint bucket under the model's
// name. Fields other than DesiredReplicas explain it and may grow; their
// names do not change.
type Hint struct {
	// Model is the model (consumer) name.
	Model string `json:"model"`
	// DesiredReplicas is the number of workers to run.
	DesiredReplicas int `json:"desiredReplicas"`
	// Reason says why (a Reason value).
	Reason Reason `json:"reason"`
	// Backlog is NumPending + NumAckPending − InFlight.
	Backlog int64 `json:"backlog"`
	// NumPending and NumAckPending are the consumer's counters as read.
	NumPending    uint64 `json:"numPending"`
	NumAckPending int    `json:"numAckPending"`
	// InFlight is the messages workers hold while batching or executing.
	InFlight int `json:"inFlight"`
	// ArrivalRate is the estimated arrival rate, messages/s.
	ArrivalRate float64 `json:"arrivalRate"`
	// ServiceRate is the per-replica service rate used, messages/s.
	ServiceRate float64 `json:"serviceRate"`
	// ServiceRateSource is "reports", "remembered", "default" or "none".
	ServiceRateSource string `json:"serviceRateSource"`
	// ReadyWorkers counts fresh worker reports.
	ReadyWorkers int `json:"readyWorkers"`
	// StaleReports counts reports ignored for age.
	StaleReports int `json:"staleReports"`
	// ColdStartSeconds is the cold start assumed for new replicas.
	ColdStartSeconds float64 `json:"coldStartSeconds"`
	// IdleSeconds is how long the model has been idle.
	IdleSeconds float64 `json:"idleSeconds"`
	// At is when the hint was computed.
	At time.Time `json:"at"`
}

func newHint(model string, o Observation, d Decision, stale int) Hint {
	return Hint{
		Model:             model,
		DesiredReplicas:   d.Desired,
		Reason:            d.Reason,
		Backlog:           d.Backlog,
		NumPending:        o.NumPending,
		NumAckPending:     o.NumAckPending,
		InFlight:          d.InFlight,
		ArrivalRate:       d.ArrivalRate,
		ServiceRate:       d.ServiceRate,
		ServiceRateSource: d.ServiceRateSource,
		ReadyWorkers:      d.Ready,
		StaleReports:      stale,
		ColdStartSeconds:  d.ColdStart.Seconds(),
		IdleSeconds:       d.IdleFor.Seconds(),
		At:                o.At,
	}
}

func encodeHint(h Hint) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encoding hint for %s: %w", h.Model, err)
	}
	return b, nil
}

// DecodeHint parses a hint as stored in the hint bucket or served over HTTP.
func DecodeHint(b []byte) (Hint, error) {
	var h Hint
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("decoding hint: %w", err)
	}
	return h, nil
}
