package scheduler

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// Handler serves the hints over HTTP:
//
//	GET /v1/models/{model}/hint  one Hint (200); 404 for a model the
//	                             scheduler does not know; 503 before the
//	                             first tick has decided it
//	GET /v1/hints                {"hints":[Hint...]} sorted by model
//	GET /healthz                 200 while the process serves
//	GET /readyz                  200 once a tick has completed, else 503
//
// A KEDA metrics-api trigger reads one model's endpoint with
// valueLocation "desiredReplicas" (HintValueLocation), metricType
// AverageValue and targetValue "1"; see docs/scaling.md. Safe for
// concurrent use; it never blocks on the scheduler's tick.
func (s *Scheduler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models/{model}/hint", s.serveHint)
	mux.HandleFunc("GET /v1/hints", s.serveHints)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.snap.Load().at.IsZero() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("no tick completed yet\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func (s *Scheduler) serveHint(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	snap := s.snap.Load()
	if h, ok := snap.hints[model]; ok {
		writeJSON(w, http.StatusOK, h)
		return
	}
	if slices.Contains(s.cfg.Models, model) && snap.at.IsZero() {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.Interval.Seconds()+1)))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no hint computed yet", "model": model})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown model", "model": model})
}

func (s *Scheduler) serveHints(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Hints []Hint `json:"hints"`
	}{s.Hints()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
