package worker

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes. As text (environment variables, flags)
// it is a plain integer or an integer with a unit: B, KiB, MiB, GiB, TiB
// (powers of 1024) or KB, MB, GB, TB (powers of 1000), e.g. "8MiB",
// "512KiB", "1048576". Units are case-sensitive; a space before the unit
// is allowed.
type ByteSize int64

// Binary byte-size units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

// byteUnits lists the accepted suffixes, longest first so that "MiB" is
// tried before "B".
var byteUnits = []struct {
	suffix string
	size   ByteSize
}{
	{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"TiB", TiB},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize parses s as described on ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	num, unit := strings.TrimSpace(s), ByteSize(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, unit = strings.TrimSpace(n), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("%q is not a byte size (want e.g. 8MiB, 512KiB or 1048576)", s)
	}
	return ByteSize(n) * unit, nil
}

// UnmarshalText implements encoding.TextUnmarshaler, so that caarlos0/env
// and flag.TextVar read byte sizes with units.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with String's form.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String returns b in the largest binary unit that divides it exactly
// ("8MiB", "1536KiB"), or as a plain integer ("1000", "0").
func (b ByteSize) String() string {
	for _, u := range [...]struct {
		suffix string
		size   ByteSize
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
