package sut

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// bencode encodes the values rtpengine's ng protocol uses: strings, ints,
// lists and dictionaries (keys sorted, as bencoding requires).
func bencode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := bencodeTo(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func bencodeTo(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case string:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.WriteString(x)
	case int:
		fmt.Fprintf(b, "i%de", x)
	case int64:
		fmt.Fprintf(b, "i%de", x)
	case []string:
		b.WriteByte('l')
		for _, s := range x {
			_ = bencodeTo(b, s)
		}
		b.WriteByte('e')
	case []any:
		b.WriteByte('l')
		for _, e := range x {
			if err := bencodeTo(b, e); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('d')
		for _, k := range keys {
			_ = bencodeTo(b, k)
			if err := bencodeTo(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	default:
		return fmt.Errorf("sut: cannot bencode %T", v)
	}
	return nil
}

// errBencode is returned for malformed bencoded input.
var errBencode = errors.New("sut: malformed bencoded data")

// maxBencodeDepth bounds nesting so that hostile input cannot exhaust the
// stack.
const maxBencodeDepth = 32

// bdecode decodes one bencoded value that fills b: strings become string,
// integers int64, lists []any, dictionaries map[string]any.
func bdecode(b []byte) (any, error) {
	v, n, err := bdecodeAt(b, 0, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBencode, len(b)-n)
	}
	return v, nil
}

func bdecodeAt(b []byte, i, depth int) (any, int, error) {
	if depth > maxBencodeDepth {
		return nil, 0, fmt.Errorf("%w: nested too deep", errBencode)
	}
	if i >= len(b) {
		return nil, 0, fmt.Errorf("%w: unexpected end", errBencode)
	}
	switch c := b[i]; {
	case c == 'i':
		j := bytes.IndexByte(b[i:], 'e')
		if j < 0 {
			return nil, 0, fmt.Errorf("%w: unterminated integer", errBencode)
		}
		n, err := strconv.ParseInt(string(b[i+1:i+j]), 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: bad integer", errBencode)
		}
		return n, i + j + 1, nil
	case c == 'l':
		var out []any
		i++
		for {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated list", errBencode)
			}
			if b[i] == 'e' {
				return out, i + 1, nil
			}
			v, n, err := bdecodeAt(b, i, depth+1)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, v)
			i = n
		}
	case c == 'd':
		out := map[string]any{}
		i++
		for {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated dictionary", errBencode)
			}
			if b[i] == 'e' {
				return out, i + 1, nil
			}
			k, n, err := bdecodeAt(b, i, depth+1)
			if err != nil {
				return nil, 0, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, 0, fmt.Errorf("%w: dictionary key is not a string", errBencode)
			}
			v, n, err := bdecodeAt(b, n, depth+1)
			if err != nil {
				return nil, 0, err
			}
			out[ks] = v
			i = n
		}
	case c >= '0' && c <= '9':
		j := bytes.IndexByte(b[i:], ':')
		if j < 0 {
			return nil, 0, fmt.Errorf("%w: string without length", errBencode)
		}
		n, err := strconv.Atoi(string(b[i : i+j]))
		start := i + j + 1
		if err != nil || n < 0 || n > len(b)-start {
			return nil, 0, fmt.Errorf("%w: bad string length", errBencode)
		}
		return string(b[start : start+n]), start + n, nil
	}
	return nil, 0, fmt.Errorf("%w: unexpected byte %q at %d", errBencode, b[i], i)
}
