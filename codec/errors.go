package codec

import (
	"errors"
	"fmt"
)

// Code is a stable, wire-visible error code. Result headers carry it, and
// producers branch on it, so the values never change.
type Code string

// Wire codes. The codec itself returns only CodeInvalidArgument (malformed
// or mismatched input) and CodeResourceExhausted (a Limits bound or a row
// bound exceeded); the others are defined here so that every package that
// writes result headers speaks one vocabulary.
const (
	CodeOK                Code = "OK"
	CodeInvalidArgument   Code = "INVALID_ARGUMENT"
	CodeResourceExhausted Code = "RESOURCE_EXHAUSTED"
	CodeDeadlineExceeded  Code = "DEADLINE_EXCEEDED"
	CodeUnavailable       Code = "UNAVAILABLE"
	CodeInternal          Code = "INTERNAL"
	CodeNotFound          Code = "NOT_FOUND"
	// CodeFailedPrecondition: the request cannot run in the system's
	// current state, e.g. it is pinned to a model version that exists but
	// that no worker serves.
	CodeFailedPrecondition Code = "FAILED_PRECONDITION"
)

// Error is the error type of every codec function that inspects untrusted
// input. Column names the offending column when there is one.
type Error struct {
	Code   Code
	Column string
	Msg    string
}

// Error formats the error for humans, e.g.
// `column "pixels": dtype float64, engine expects float32`. The code is not
// part of the text; it travels separately.
func (e *Error) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("column %q: %s", e.Column, e.Msg)
	}
	return e.Msg
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &codec.Error{Code: codec.CodeInvalidArgument}) matches any
// invalid-argument error regardless of column and message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeOf returns the wire code for err: CodeOK for nil, the Code of the
// first *Error in err's chain, and CodeInternal for any other error.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

func invalidf(column, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgument, Column: column, Msg: fmt.Sprintf(format, args...)}
}

func exhaustedf(column, format string, args ...any) *Error {
	return &Error{Code: CodeResourceExhausted, Column: column, Msg: fmt.Sprintf(format, args...)}
}
