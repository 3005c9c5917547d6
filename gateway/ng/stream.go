package ng

import (
	"bytes"
	"errors"
)

// errMore is what the scanner returns when the bytes end inside a value.
var errMore = errors.New("ng: more bytes needed")

// FrameLen returns the length of the message at the start of b, a stream
// of messages back to back as rtpengine frames ng over TCP: a cookie, a
// space and one bencoded value, with nothing between messages. It
// returns 0 and no error when b holds only the start of a message (read
// more), and a *DecodeError when b cannot start one (the stream cannot be
// resynchronised: close it). It checks the framing only, within the
// decoder's limits of nesting and string length; Decode checks the rest.
// FrameLen never panics and allocates nothing.
func FrameLen(b []byte) (int, error) {
	sp := bytes.IndexByte(b[:min(len(b), MaxCookie+1)], ' ')
	switch {
	case sp < 0 && len(b) > MaxCookie:
		return 0, &DecodeError{Offset: 0, Reason: "no cookie"}
	case sp < 0:
		return 0, nil
	case sp == 0:
		return 0, &DecodeError{Offset: 0, Reason: "empty cookie"}
	}
	n, err := skipValue(b, sp+1, 0)
	if errors.Is(err, errMore) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// skipValue returns the index just past the bencoded value at b[i:].
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errMore
	}
	switch c := b[i]; {
	case c == 'i':
		// At most "-" and 19 digits before the 'e'.
		end := bytes.IndexByte(b[i+1:min(len(b), i+22)], 'e')
		switch {
		case end < 0 && len(b)-i >= 22:
			return 0, &DecodeError{Offset: i, Reason: "unterminated integer"}
		case end < 0:
			return 0, errMore
		}
		return i + 1 + end + 1, nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b[i:min(len(b), i+8)], ':')
		switch {
		case colon < 0 && len(b)-i >= 8:
			return 0, &DecodeError{Offset: i, Reason: "bad string length"}
		case colon < 0:
			return 0, errMore
		}
		n := 0
		for _, d := range b[i : i+colon] {
			if d < '0' || d > '9' {
				return 0, &DecodeError{Offset: i, Reason: "bad string length"}
			}
			n = n*10 + int(d-'0')
		}
		if n > MaxString {
			return 0, &DecodeError{Offset: i, Reason: "string too long"}
		}
		end := i + colon + 1 + n
		if end > len(b) {
			return 0, errMore
		}
		return end, nil
	case c == 'l' || c == 'd':
		if depth >= MaxDepth {
			return 0, &DecodeError{Offset: i, Reason: "nested too deep"}
		}
		i++
		for {
			if i >= len(b) {
				return 0, errMore
			}
			if b[i] == 'e' {
				return i + 1, nil
			}
			var err error
			if i, err = skipValue(b, i, depth+1); err != nil {
				return 0, err
			}
		}
	default:
		return 0, &DecodeError{Offset: i, Reason: "unexpected byte"}
	}
}
