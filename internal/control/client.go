package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client talks to a running daemon's control API, over its unix socket or
// over TCP with a bearer token. It is safe for concurrent use.
type Client struct {
	base   string
	socket string // unix socket path, or empty for TCP
	token  string
	hc     *http.Client
}

// NewClient returns a client for addr: a unix socket path (anything with a
// slash), "unix:PATH", or "http://host:port" / "host:port" for TCP. token is
// sent as a bearer token when not empty.
func NewClient(addr, token string) *Client {
	c := &Client{token: token}
	tr := &http.Transport{MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second}
	isHTTP := strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://")
	switch {
	// A unix socket: "unix:PATH", a path with a slash, or a bare file name
	// (no colon, so it cannot be host:port).
	case strings.HasPrefix(addr, "unix:") || !isHTTP && (strings.Contains(addr, "/") || !strings.Contains(addr, ":")):
		path := strings.TrimPrefix(addr, "unix:")
		c.socket = path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://mediaedge"
	case isHTTP:
		c.base = strings.TrimSuffix(addr, "/")
	default:
		c.base = "http://" + addr
	}
	c.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return c
}

// APIError is an error response of the control API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	// A message that names its component ("gateway: ...") needs no
	// "control: " in front: one prefix per error.
	if hasPrefixWord(e.Message) {
		return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
	}
	return fmt.Sprintf("control: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Do sends a request with in (if not nil) as its JSON body and decodes the
// JSON response into out (if not nil). Error responses become *APIError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control: reading response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &APIError{Status: resp.StatusCode, Code: CodeInternal, Message: strings.TrimSpace(string(data))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("control: decoding response: %w", err)
		}
	}
	return nil
}

// dialError explains why the daemon could not be reached. A socket that
// exists but refuses us (EACCES: the daemon runs, we are not in its group)
// is not "is the daemon running?".
func (c *Client) dialError(err error) error {
	where := c.base
	if c.socket != "" {
		where = c.socket
	}
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &DialError{Addr: where, Hint: "permission denied: join group mediaedge or use sudo", Err: err}
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &DialError{Addr: where, Hint: "is the daemon running? (start it with 'mediaedge run', or pass --control)", Err: err}
	}
	return &DialError{Addr: where, Hint: "is the daemon running?", Err: err}
}

// DialError says that the control API at Addr could not be reached; Hint
// says what to do about it.
type DialError struct {
	Addr string
	Hint string
	Err  error
}

func (e *DialError) Error() string {
	cause := e.Err
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	var oe *net.OpError
	if errors.As(cause, &oe) && oe.Err != nil {
		cause = oe.Err
	}
	return fmt.Sprintf("control: %s: %v: %s", e.Addr, cause, e.Hint)
}

func (e *DialError) Unwrap() error { return e.Err }

// hasPrefixWord reports whether msg starts with a lowercase word and ": ",
// as errors of this project do ("gateway: ...").
func hasPrefixWord(msg string) bool {
	w, _, ok := strings.Cut(msg, ": ")
	if !ok || w == "" {
		return false
	}
	for _, r := range w {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }
