package relay

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // RFC 8489 long-term credentials are MD5 by definition
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // TURN REST credentials (coturn use-auth-secret) are HMAC-SHA1
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxUsernameLen bounds user names, static and REST alike (RFC 8489 limits
// USERNAME to 513 bytes; nobody needs that many).
const MaxUsernameLen = 256

// LongTermKey returns the RFC 8489 long-term credential key
// MD5(username ":" realm ":" password), the value coturn writes as
// 0x<hex> in its user database.
func LongTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec
	h.Write([]byte(username + ":" + realm + ":" + password))
	return h.Sum(nil)
}

// RESTPassword returns the password of a TURN REST ephemeral credential:
// base64(HMAC-SHA1(secret, username)), as coturn's use-auth-secret checks it.
func RESTPassword(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// MintCredentials returns a TURN REST username ("<expiry>:<user>", expiry in
// Unix seconds) valid for ttl from now, and its password under secret. The
// CLI's `turn credentials` uses it; any coturn-compatible service minting
// credentials with the same secret is interchangeable with it.
func MintCredentials(secret []byte, user string, ttl time.Duration, now time.Time) (username, password string, err error) {
	if len(secret) == 0 {
		return "", "", errNoSecret
	}
	if err := checkUserName(user); err != nil {
		return "", "", err
	}
	if ttl <= 0 {
		return "", "", fmt.Errorf("relay: credential lifetime %s must be positive", ttl)
	}
	exp := now.Add(ttl).Unix()
	username = strconv.FormatInt(exp, 10) + ":" + user
	return username, RESTPassword(secret, username), nil
}

// checkUserName refuses names that cannot be carried in a USERNAME or that
// would be ambiguous with the REST form.
func checkUserName(u string) error {
	switch {
	case u == "":
		return fmt.Errorf("relay: empty user name")
	case len(u) > MaxUsernameLen:
		return fmt.Errorf("relay: user name longer than %d bytes", MaxUsernameLen)
	case strings.ContainsAny(u, ":\r\n\t "):
		return fmt.Errorf("relay: user name %q contains ':' or white space", u)
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Errorf("relay: user name %q contains control or invalid characters", u)
		}
	}
	return nil
}

// parseRESTUsername splits "<expiry>:<user>". ok is false when u is not in
// that form (a static user name never contains ':').
func parseRESTUsername(u string) (expiry time.Time, user string, ok bool) {
	ts, user, found := strings.Cut(u, ":")
	if !found || ts == "" || len(ts) > 12 || user == "" {
		return time.Time{}, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, "", false
		}
	}
	v, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	if checkUserName(user) != nil {
		return time.Time{}, "", false
	}
	return time.Unix(v, 0), user, true
}

// parseUsers reads a users file: one "name:password" or "name:0x<32 hex
// digits>" (the precomputed key MD5(name:realm:password), coturn's format)
// per line; blank lines and lines starting with '#' are ignored. Errors name
// the line and never quote a password or key.
func parseUsers(data []byte, realm string) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		name, secret, found := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !found || secret == "" {
			return nil, fmt.Errorf("users file line %d: want name:password or name:0x<key>", line)
		}
		if err := checkUserName(name); err != nil {
			return nil, fmt.Errorf("users file line %d: %w", line, err)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("users file line %d: user %q listed twice", line, name)
		}
		key, err := userKey(name, realm, secret)
		if err != nil {
			return nil, fmt.Errorf("users file line %d (user %q): %w", line, name, err)
		}
		users[name] = key
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file line %d: %w", line+1, err)
	}
	return users, nil
}

func userKey(name, realm, secret string) ([]byte, error) {
	if strings.HasPrefix(secret, "0x") || strings.HasPrefix(secret, "0X") {
		h := secret[2:]
		if len(h) != 2*md5.Size {
			return nil, fmt.Errorf("a 0x key must have %d hex digits", 2*md5.Size)
		}
		key, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("the 0x key is not hexadecimal")
		}
		return key, nil
	}
	return LongTermKey(name, realm, secret), nil
}

// parseSecrets reads a REST shared-secret file: one secret per line, blank
// lines and '#' comments ignored. Several lines are several secrets in
// force at once (rotation); the first is the one `turn credentials` signs
// with.
func parseSecrets(data []byte) ([][]byte, error) {
	var out [][]byte
	for i, l := range bytes.Split(data, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		if len(l) < 16 {
			return nil, fmt.Errorf("secret on line %d is shorter than 16 bytes", i+1)
		}
		out = append(out, append([]byte(nil), l...))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no secret in the file")
	}
	return out, nil
}

// generatePassword returns a random password for the trial user: 24
// characters of URL-safe base64 (144 bits).
func generatePassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("relay: generating a password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ParseSecretFile returns the REST shared secrets of a secret file's
// contents (one per line, '#' comments), first one first.
func ParseSecretFile(data []byte) ([][]byte, error) { return parseSecrets(data) }

// URIs returns the TURN URIs of cfg's listeners (RFC 7065), with host
// replacing the listener address when it is not empty (the name clients
// use, or the public address behind NAT).
func (c *Config) URIs(host string) []string {
	var out []string
	for _, l := range c.Listeners {
		h := l.Addr.Addr().String()
		if l.Addr.Addr().Is6() && !l.Addr.Addr().Is4In6() {
			h = "[" + h + "]"
		}
		if host != "" {
			h = host
		}
		hp := h + ":" + strconv.Itoa(int(l.Addr.Port()))
		switch l.Transport {
		case TransportUDP:
			out = append(out, "turn:"+hp+"?transport=udp")
		case TransportTCP:
			out = append(out, "turn:"+hp+"?transport=tcp")
		case TransportTLS:
			out = append(out, "turns:"+hp+"?transport=tcp")
		}
	}
	return out
}
