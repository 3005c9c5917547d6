// Package ng holds the wire formats of rtpengine's ng control protocol as
// SIP proxies (Kamailio's and OpenSIPS's rtpengine modules) speak it: the
// bencode codec of its messages and the SDP rewriting a media relay does on
// the SDP bodies they carry. It knows nothing about sessions; the gateway
// package drives it. The functions keep no shared state and are safe for
// concurrent use; a parsed SDP belongs to its caller.
package ng

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
)

// Limits of the bencode decoder. An ng request is one UDP datagram, so a
// real message is a few kilobytes: a dictionary of flags and one SDP body.
const (
	// MaxDepth bounds the nesting of lists and dictionaries.
	MaxDepth = 8
	// MaxItems bounds the elements of one list or dictionary.
	MaxItems = 256
	// MaxTotalItems bounds the values of one message.
	MaxTotalItems = 2048
	// MaxString bounds one string (an SDP body is the longest).
	MaxString = 64 << 10
)

// Decode parses one bencoded value that must fill b exactly. Dictionaries
// become map[string]any (keys in any order, as Kamailio does not sort
// them; a repeated key is an error), lists []any, integers int64, and
// strings Go strings holding the raw bytes. Decode never panics and
// allocates in proportion to len(b).
func Decode(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(b) {
		return nil, d.errf("%d bytes after the value", len(b)-d.i)
	}
	return v, nil
}

type decoder struct {
	b     []byte
	i     int
	items int
}

func (d *decoder) errf(format string, a ...any) error {
	return &DecodeError{Offset: d.i, Reason: fmt.Sprintf(format, a...)}
}

func (d *decoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, d.errf("unexpected end")
	}
	d.items++
	if d.items > MaxTotalItems {
		return nil, d.errf("more than %d values", MaxTotalItems)
	}
	switch c := d.b[d.i]; {
	case c == 'i':
		d.i++
		end := bytes.IndexByte(d.b[d.i:], 'e')
		if end < 0 {
			return nil, d.errf("unterminated integer")
		}
		n, err := parseInt(d.b[d.i : d.i+end])
		if err != nil {
			return nil, d.errf("bad integer")
		}
		d.i += end + 1
		return n, nil
	case c >= '0' && c <= '9':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return s, nil
	case c == 'l':
		if depth >= MaxDepth {
			return nil, d.errf("nested deeper than %d", MaxDepth)
		}
		d.i++
		l := []any{}
		for {
			if d.i >= len(d.b) {
				return nil, d.errf("unterminated list")
			}
			if d.b[d.i] == 'e' {
				d.i++
				return l, nil
			}
			if len(l) >= MaxItems {
				return nil, d.errf("list of more than %d items", MaxItems)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
	case c == 'd':
		if depth >= MaxDepth {
			return nil, d.errf("nested deeper than %d", MaxDepth)
		}
		d.i++
		m := map[string]any{}
		for {
			if d.i >= len(d.b) {
				return nil, d.errf("unterminated dictionary")
			}
			if d.b[d.i] == 'e' {
				d.i++
				return m, nil
			}
			if len(m) >= MaxItems {
				return nil, d.errf("dictionary of more than %d keys", MaxItems)
			}
			if c := d.b[d.i]; c < '0' || c > '9' {
				return nil, d.errf("dictionary key is not a string")
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			if _, dup := m[k]; dup {
				return nil, d.errf("key %q repeated", clip(k))
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
	default:
		return nil, d.errf("unexpected byte 0x%02x", c)
	}
}

// str reads "<len>:<bytes>".
func (d *decoder) str() (string, error) {
	colon := bytes.IndexByte(d.b[d.i:], ':')
	if colon < 1 || colon > 7 {
		return "", d.errf("bad string length")
	}
	n, err := strconv.Atoi(string(d.b[d.i : d.i+colon]))
	if err != nil || n < 0 || (colon > 1 && d.b[d.i] == '0') {
		return "", d.errf("bad string length")
	}
	if n > MaxString {
		return "", d.errf("string of %d bytes (at most %d)", n, MaxString)
	}
	start := d.i + colon + 1
	if n > len(d.b)-start {
		return "", d.errf("string runs past the end")
	}
	d.i = start + n
	return string(d.b[start:d.i]), nil
}

// parseInt parses a bencode integer: no leading zeros, no "-0".
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, strconv.ErrSyntax
	}
	digits := b
	if b[0] == '-' {
		digits = b[1:]
	}
	if len(digits) == 0 || (digits[0] == '0' && (len(digits) > 1 || len(b) > 1)) {
		return 0, strconv.ErrSyntax
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// Encode appends the bencoding of v to b. v is built from string, []byte,
// int, int64, uint64, []any, []string and map[string]any (keys written in
// sorted order, as bencode requires); anything else is an error.
func Encode(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		return append(b, x...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		return append(b, x...), nil
	case int:
		return Encode(b, int64(x))
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, x, 10)
		return append(b, 'e'), nil
	case uint64:
		b = append(b, 'i')
		b = strconv.AppendUint(b, x, 10)
		return append(b, 'e'), nil
	case []string:
		b = append(b, 'l')
		for _, s := range x {
			b, _ = Encode(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, e := range x {
			var err error
			if b, err = Encode(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = Encode(b, k)
			var err error
			if b, err = Encode(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	default:
		return nil, fmt.Errorf("ng: cannot bencode a %T", v)
	}
}

// clip shortens untrusted text quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
