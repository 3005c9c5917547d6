package ng

import (
	"bytes"
	"strconv"
)

// MaxCookie bounds a message's cookie. Kamailio's look like "12345_678_0".
const MaxCookie = 64

// SplitCookie splits a datagram into its cookie and its body. It reports
// false when there is no printable cookie followed by a space: such a
// datagram cannot be answered and is dropped.
func SplitCookie(b []byte) (cookie string, body []byte, ok bool) {
	i := bytes.IndexByte(b, ' ')
	if i < 1 || i > MaxCookie {
		return "", nil, false
	}
	for _, c := range b[:i] {
		if c <= ' ' || c > '~' {
			return "", nil, false
		}
	}
	return string(b[:i]), b[i+1:], true
}

// Dict is a decoded ng request or reply.
type Dict map[string]any

// DecodeRequest decodes the body of a request: a bencoded dictionary.
func DecodeRequest(body []byte) (Dict, error) {
	v, err := Decode(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &DecodeError{Reason: "the message is not a dictionary"}
	}
	return Dict(m), nil
}

// Str returns a string field ("" when absent or not a string).
func (d Dict) Str(key string) string {
	s, _ := d[key].(string)
	return s
}

// Strs returns a field that is a list of strings or a single string (the
// proxies send both shapes for flags such as SDES or replace). Elements
// that are not strings are skipped.
func (d Dict) Strs(key string) []string {
	switch v := d[key].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Int returns an integer field given as an integer or as decimal text.
func (d Dict) Int(key string) (int64, bool) {
	switch v := d[key].(type) {
	case int64:
		return v, true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// Has reports whether key is present.
func (d Dict) Has(key string) bool {
	_, ok := d[key]
	return ok
}

// Reply formats "<cookie> <bencoded reply>".
func Reply(cookie string, reply map[string]any) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, cookie...)
	b = append(b, ' ')
	return Encode(b, reply)
}

// ErrorReply is the reply to a refused request, in rtpengine's shape.
func ErrorReply(reason string) map[string]any {
	return map[string]any{"result": "error", "error-reason": reason}
}
