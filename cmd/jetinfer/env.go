package main

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/caarlos0/env/v10"
)

// envPrefix starts every environment variable jetinfer reads.
const envPrefix = "JETINFER_"

// parseEnv fills cfg, a pointer to a configuration struct with env tags,
// from JETINFER_* environment variables. A value that does not parse is
// reported by its variable, e.g. `JETINFER_MAX_DELAY: "abc" is not a
// duration`, rather than by Go field name; every bad variable is reported.
func parseEnv(cfg any) error {
	type setting struct{ key, value string }
	var read []setting
	err := env.ParseWithOptions(cfg, env.Options{
		Prefix: envPrefix,
		OnSet: func(key string, value any, _ bool) {
			if s, ok := value.(string); ok && s != "" {
				read = append(read, setting{key, s})
			}
		},
	})
	if err == nil {
		return nil
	}
	// caarlos0/env names the Go field, not the variable. Find the
	// variables that fail by parsing each one alone into a fresh struct.
	var errs []error
	for _, r := range read {
		probe := reflect.New(reflect.TypeOf(cfg).Elem()).Interface()
		perr := env.ParseWithOptions(probe, env.Options{Prefix: envPrefix, Environment: map[string]string{r.key: r.value}})
		if pe, ok := firstParseError(perr); ok {
			errs = append(errs, fmt.Errorf("%s: %w", r.key, describeParseError(r.value, pe)))
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("reading %s* environment: %w", envPrefix, err)
	}
	return errors.Join(errs...)
}

// firstParseError returns the first env.ParseError in err.
func firstParseError(err error) (env.ParseError, bool) {
	var agg env.AggregateError
	if errors.As(err, &agg) {
		for _, e := range agg.Errors {
			var pe env.ParseError
			if errors.As(e, &pe) {
				return pe, true
			}
		}
	}
	var pe env.ParseError
	ok := errors.As(err, &pe)
	return pe, ok
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// describeParseError says what value should have been.
func describeParseError(value string, pe env.ParseError) error {
	t := pe.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return pe.Err // the type's own message, e.g. ByteSize's
	}
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	var want string
	switch {
	case t == durationType:
		want = "a duration (e.g. 2ms, 1m30s)"
	case t.Kind() == reflect.Bool:
		want = "a boolean (true or false)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		want = "an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		want = "a non-negative integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "a number"
	default:
		return fmt.Errorf("%q: %w", value, pe.Err)
	}
	return fmt.Errorf("%q is not %s", value, want)
}
