package models_test

import (
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/worker/models"
)

// Names are checked against their patterns and their lengths apart: the
// bounds hold at their edges.
func TestNameBounds(t *testing.T) {
	for _, tc := range []struct {
		model, version string
		ok             bool
	}{
		{"m", "", true},
		{strings.Repeat("m", 128), "", true},
		{strings.Repeat("m", 129), "", false},
		{"", "", false},
		{"a.b", "", false},
		{"m", "1.2.0", true},
		{"m", strings.Repeat("1", 128), true},
		{"m", strings.Repeat("1", 129), false},
		{"m", "1..2", false},
	} {
		if err := models.CheckName(tc.model, tc.version); (err == nil) != tc.ok {
			t.Errorf("CheckName(%d bytes, %q): err = %v, want ok=%v", len(tc.model), tc.version, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		alias string
		ok    bool
	}{
		{"stable", true},
		{"s" + strings.Repeat("x", 63), true},
		{"s" + strings.Repeat("x", 64), false},
		{"", false},
		{"1st", false},
		{"Stable", false},
	} {
		if err := models.CheckAlias(tc.alias); (err == nil) != tc.ok {
			t.Errorf("CheckAlias(%q): err = %v, want ok=%v", tc.alias, err, tc.ok)
		}
	}
}
