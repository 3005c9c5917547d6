package gateway

import (
	"encoding/base64"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// SDES (RFC 4568) a=crypto attributes:
//
//	a=crypto:<tag> <crypto-suite> <key-params> [<session-param> ...]
//	key-params = "inline:" <base64 key||salt> ["|" <lifetime>] ["|" <MKI>:<length>]
//	             (several key-params separated by ";", each with its own MKI)
//
// The lifetime is a count of packets, decimal or "2^n". Session parameters
// that mediaedge understands are WSH (replay window hint), KDR=0, and
// UNENCRYPTED_SRTP / UNENCRYPTED_SRTCP (accepted only where NULL ciphers
// are allowed). Everything else is refused: RFC 4568 section 6.3 says an
// endpoint must not accept a crypto attribute whose parameters it does
// not understand.

const (
	// maxMKILen is RFC 4568's limit on the MKI length; real
	// implementations use 1 to 4 bytes.
	maxMKILen = 128
	// maxKeyParams bounds the keys in one attribute.
	maxKeyParams = 4
	// maxCryptoLine bounds the attribute's length before parsing.
	maxCryptoLine = 1024
	// maxLifetimeRTP is the SRTP limit of RFC 3711 section 9.2 (2^48).
	maxLifetimeRTP = uint64(1) << 48
	// maxWSH bounds the replay window a peer may ask for.
	maxWSH = 8192
)

// Crypto is a parsed a=crypto attribute. Keys holds secrets: never log or
// print a Crypto other than through Redacted.
type Crypto struct {
	// Tag is the attribute's decimal tag (1 to 999999999).
	Tag uint32
	// Suite is the crypto suite.
	Suite *Suite
	// Keys are the master keys, at least one. With more than one, every
	// key has an MKI of the same length.
	Keys []MasterKey
	// WSH is the window size hint (0: not given).
	WSH int
	// UnencryptedSRTP and UnencryptedSRTCP ask for authentication only.
	UnencryptedSRTP, UnencryptedSRTCP bool
}

// MasterKey is one SDES master key with its optional lifetime and MKI.
type MasterKey struct {
	// Key and Salt are the master key and salt; secret.
	Key, Salt []byte
	// Lifetime is the packet budget of the key; 0 when not given.
	Lifetime uint64
	// MKI is the master key identifier as sent on the wire (big-endian,
	// its length is the MKI length); nil without MKI.
	MKI []byte
}

// ParseCrypto parses an a=crypto attribute value, with or without the
// "a=crypto:" prefix. Errors describe the problem without the key.
func ParseCrypto(s string) (*Crypto, error) {
	if len(s) > maxCryptoLine {
		return nil, &CryptoError{Reason: fmt.Sprintf("longer than %d bytes", maxCryptoLine)}
	}
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "a=")
	s = strings.TrimPrefix(s, "crypto:")
	f := strings.Fields(s)
	if len(f) < 3 {
		return nil, &CryptoError{Reason: "want \"<tag> <suite> inline:<key>\""}
	}
	tag, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil || tag == 0 || tag > 999999999 || len(f[0]) > 9 {
		return nil, &CryptoError{Reason: fmt.Sprintf("tag %q is not a number from 1 to 999999999", clip(f[0]))}
	}
	c := &Crypto{Tag: uint32(tag), Suite: LookupSuite(f[1])}
	if c.Suite == nil {
		return nil, &CryptoError{Reason: fmt.Sprintf("unsupported crypto suite %q", clip(f[1]))}
	}
	params := strings.Split(f[2], ";")
	if len(params) > maxKeyParams {
		return nil, &CryptoError{Reason: fmt.Sprintf("more than %d keys", maxKeyParams)}
	}
	for i, p := range params {
		k, err := parseKeyParam(c.Suite, p)
		if err != nil {
			if len(params) > 1 {
				err.Reason = fmt.Sprintf("key %d: %s", i+1, err.Reason)
			}
			return nil, err
		}
		c.Keys = append(c.Keys, k)
	}
	if len(c.Keys) > 1 {
		seen := map[string]bool{}
		for _, k := range c.Keys {
			if k.MKI == nil || len(k.MKI) != len(c.Keys[0].MKI) {
				return nil, &CryptoError{Reason: "several keys need MKIs of one length"}
			}
			if seen[string(k.MKI)] {
				return nil, &CryptoError{Reason: "two keys with the same MKI"}
			}
			seen[string(k.MKI)] = true
		}
	}
	for _, sp := range f[3:] {
		if err := c.sessionParam(sp); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Crypto) sessionParam(sp string) *CryptoError {
	name, val, hasVal := strings.Cut(sp, "=")
	switch strings.ToUpper(name) {
	case "UNENCRYPTED_SRTP":
		c.UnencryptedSRTP = true
	case "UNENCRYPTED_SRTCP":
		c.UnencryptedSRTCP = true
	case "KDR":
		// Only KDR=0 (derive once per master key) is supported by
		// pion/srtp and by every implementation met in practice.
		if v, err := strconv.ParseUint(val, 10, 8); !hasVal || err != nil || v != 0 {
			return &CryptoError{Reason: fmt.Sprintf("key derivation rate %q is not supported (only KDR=0)", clip(val))}
		}
	case "WSH":
		v, err := strconv.ParseUint(val, 10, 32)
		if !hasVal || err != nil || v < 64 || v > maxWSH {
			return &CryptoError{Reason: fmt.Sprintf("window size hint %q is not a number from 64 to %d", clip(val), maxWSH)}
		}
		c.WSH = int(v)
	case "UNAUTHENTICATED_SRTP":
		return &CryptoError{Reason: "UNAUTHENTICATED_SRTP is refused: every packet must authenticate"}
	default:
		return &CryptoError{Reason: fmt.Sprintf("unsupported session parameter %q", clip(name))}
	}
	return nil
}

func parseKeyParam(suite *Suite, p string) (MasterKey, *CryptoError) {
	method, info, ok := strings.Cut(p, ":")
	if !ok || !strings.EqualFold(method, "inline") {
		return MasterKey{}, &CryptoError{Reason: "key method must be inline"}
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return MasterKey{}, &CryptoError{Reason: "too many \"|\" fields after the key"}
	}
	raw, err := decodeBase64(parts[0])
	if err != nil {
		return MasterKey{}, &CryptoError{Reason: "key is not valid base64"}
	}
	if len(raw) != suite.KeyLen+suite.SaltLen {
		wipe(raw)
		return MasterKey{}, &CryptoError{Reason: fmt.Sprintf("key is %d bytes; %s needs %d (key %d + salt %d)",
			len(raw), suite.Name, suite.KeyLen+suite.SaltLen, suite.KeyLen, suite.SaltLen)}
	}
	k := MasterKey{Key: raw[:suite.KeyLen:suite.KeyLen], Salt: raw[suite.KeyLen:]}
	for _, f := range parts[1:] {
		if strings.Contains(f, ":") {
			if k.MKI != nil {
				return MasterKey{}, &CryptoError{Reason: "two MKI fields"}
			}
			mki, err := parseMKI(f)
			if err != nil {
				return MasterKey{}, err
			}
			k.MKI = mki
			continue
		}
		if k.Lifetime != 0 || k.MKI != nil {
			return MasterKey{}, &CryptoError{Reason: "lifetime must come once, before the MKI"}
		}
		lt, err := parseLifetime(f)
		if err != nil {
			return MasterKey{}, err
		}
		k.Lifetime = lt
	}
	return k, nil
}

// parseLifetime parses "2^n" or a decimal packet count.
func parseLifetime(s string) (uint64, *CryptoError) {
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.ParseUint(exp, 10, 8)
		if err != nil || n > 48 {
			return 0, &CryptoError{Reason: fmt.Sprintf("lifetime %q: want 2^0 to 2^48", clip(s))}
		}
		return 1 << n, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > maxLifetimeRTP {
		return 0, &CryptoError{Reason: fmt.Sprintf("lifetime %q: want a packet count from 1 to 2^48", clip(s))}
	}
	return n, nil
}

// parseMKI parses "<value>:<length>" into length big-endian bytes.
func parseMKI(s string) ([]byte, *CryptoError) {
	vs, ls, _ := strings.Cut(s, ":")
	l, err := strconv.ParseUint(ls, 10, 8)
	if err != nil || l < 1 || l > maxMKILen {
		return nil, &CryptoError{Reason: fmt.Sprintf("MKI length %q: want 1 to %d bytes", clip(ls), maxMKILen)}
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil || (l < 8 && v>>(8*l) != 0) {
		return nil, &CryptoError{Reason: fmt.Sprintf("MKI value %q does not fit in %d bytes", clip(vs), l)}
	}
	mki := make([]byte, l)
	for i := int(l) - 1; i >= 0 && v > 0; i-- {
		mki[i] = byte(v)
		v >>= 8
	}
	return mki, nil
}

func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	// Some implementations leave out the padding.
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// String formats c as a full SDP line, "a=crypto:1 SUITE inline:...". It
// contains the keys: only for API responses that hand a key to its user.
func (c *Crypto) String() string {
	var b strings.Builder
	b.WriteString("a=crypto:")
	b.WriteString(strconv.FormatUint(uint64(c.Tag), 10))
	b.WriteByte(' ')
	b.WriteString(c.Suite.Name)
	b.WriteByte(' ')
	for i, k := range c.Keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString("inline:")
		raw := make([]byte, 0, len(k.Key)+len(k.Salt))
		raw = append(append(raw, k.Key...), k.Salt...)
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		wipe(raw)
		if k.Lifetime != 0 {
			b.WriteByte('|')
			b.WriteString(formatLifetime(k.Lifetime))
		}
		if k.MKI != nil {
			fmt.Fprintf(&b, "|%d:%d", mkiValue(k.MKI), len(k.MKI))
		}
	}
	if c.WSH != 0 {
		fmt.Fprintf(&b, " WSH=%d", c.WSH)
	}
	if c.UnencryptedSRTP {
		b.WriteString(" UNENCRYPTED_SRTP")
	}
	if c.UnencryptedSRTCP {
		b.WriteString(" UNENCRYPTED_SRTCP")
	}
	return b.String()
}

// Redacted describes c without its keys, for logs and errors.
func (c *Crypto) Redacted() string {
	return fmt.Sprintf("a=crypto:%d %s inline:<%d keys redacted>", c.Tag, c.Suite.Name, len(c.Keys))
}

// Wipe overwrites every key in c (best effort: copies made by the crypto
// libraries are out of reach).
func (c *Crypto) Wipe() {
	for i := range c.Keys {
		wipe(c.Keys[i].Key)
		wipe(c.Keys[i].Salt)
	}
}

func formatLifetime(n uint64) string {
	if n&(n-1) == 0 {
		return "2^" + strconv.Itoa(bits.TrailingZeros64(n))
	}
	return strconv.FormatUint(n, 10)
}

// mkiValue returns the MKI's numeric value (its last 8 bytes).
func mkiValue(mki []byte) uint64 {
	var v uint64
	for _, b := range mki {
		v = v<<8 | uint64(b)
	}
	return v
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func wipe(b []byte) { clear(b) }
