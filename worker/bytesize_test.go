package worker

import (
	"encoding"
	"fmt"
	"testing"
)

var _ encoding.TextUnmarshaler = (*ByteSize)(nil)

func TestParseByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ByteSize
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"8MiB", 8 << 20},
		{"64MiB", 64 << 20},
		{"512KiB", 512 << 10},
		{"2GiB", 2 << 30},
		{"1TiB", 1 << 40},
		{"100B", 100},
		{"8 MiB", 8 << 20},
		{" 3KB ", 3000},
		{"5MB", 5_000_000},
		{"1GB", 1_000_000_000},
	} {
		got, err := ParseByteSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "abc", "8Mi", "8mib", "-1", "-1MiB", "1.5GiB", "MiB", "8MiBs", "9223372036854775807KiB", "99999999999999999999"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestByteSizeTextRoundTrip(t *testing.T) {
	for _, c := range []struct {
		b    ByteSize
		want string
	}{
		{0, "0"},
		{1000, "1000"},
		{1023, "1023"},
		{KiB, "1KiB"},
		{1536 * KiB, "1536KiB"},
		{8 * MiB, "8MiB"},
		{64 * MiB, "64MiB"},
		{3 * GiB, "3GiB"},
		{2 * TiB, "2TiB"},
	} {
		if got := c.b.String(); got != c.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(c.b), got, c.want)
		}
		var back ByteSize
		if err := back.UnmarshalText([]byte(c.b.String())); err != nil || back != c.b {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", c.b.String(), back, err, c.b)
		}
		if got := fmt.Sprint(c.b); got != c.want {
			t.Errorf("fmt.Sprint(ByteSize(%d)) = %q, want %q", int64(c.b), got, c.want)
		}
	}
}

func TestByteSizeUnmarshalKeepsValueOnError(t *testing.T) {
	b := 8 * MiB
	if err := b.UnmarshalText([]byte("lots")); err == nil {
		t.Fatal("UnmarshalText(lots) succeeded")
	}
	if b != 8*MiB {
		t.Errorf("after a failed UnmarshalText the value is %v, want it unchanged (8MiB)", b)
	}
}
