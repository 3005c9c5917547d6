package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxBody bounds request bodies: control requests are small.
const MaxBody = 1 << 20

// Stable error codes of the control API. Clients branch on these, never on
// messages.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not_found"
	CodeMethod       = "method_not_allowed"
	CodeConflict     = "conflict"
	CodeLimit        = "limit_reached"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an ErrorBody with a stable code and a message. The
// message must not contain secrets.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, OnePrefix(msg)
	WriteJSON(w, status, b)
}

// DecodeJSON reads one JSON value from r's body into v, refusing unknown
// fields, trailing data and bodies over MaxBody. On failure it writes a 400
// response and returns false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decodeStrict(r.Body, v); err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return false
	}
	return true
}

func decodeStrict(body io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(body, MaxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return fmt.Errorf("request body larger than %d bytes", MaxBody)
		case errors.Is(err, io.EOF):
			return errors.New("empty request body")
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON: trailing data after the object")
	}
	return nil
}

// OnePrefix removes repeats of msg's leading component prefix from the rest
// of it: "gateway: cloud.crypto: gateway: a=crypto: ..." becomes "gateway:
// cloud.crypto: a=crypto: ...". Wrapped errors of one package each carry
// the package's name; the reader needs it once.
func OnePrefix(msg string) string {
	if !hasPrefixWord(msg) {
		return msg
	}
	w, rest, _ := strings.Cut(msg, ": ")
	rest = strings.ReplaceAll(rest, ": "+w+": ", ": ")
	rest = strings.TrimPrefix(rest, w+": ")
	return w + ": " + rest
}
