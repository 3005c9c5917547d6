package srtpcheck

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// Suite is an SDES crypto suite (RFC 4568, RFC 6188, RFC 7714).
type Suite struct {
	// Name is the SDES name, e.g. AES_CM_128_HMAC_SHA1_80.
	Name    string
	Profile srtp.ProtectionProfile
	KeyLen  int
	SaltLen int
	// TagLen is the SRTP authentication tag length.
	TagLen int
}

var suites = []Suite{
	{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14, 10},
	{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14, 4},
	{"AES_256_CM_HMAC_SHA1_80", srtp.ProtectionProfileAes256CmHmacSha1_80, 32, 14, 10},
	{"AES_256_CM_HMAC_SHA1_32", srtp.ProtectionProfileAes256CmHmacSha1_32, 32, 14, 4},
	{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12, 16},
	{"AEAD_AES_256_GCM", srtp.ProtectionProfileAeadAes256Gcm, 32, 12, 16},
}

// LookupSuite returns the suite with the SDES name (case-insensitive).
func LookupSuite(name string) (Suite, error) {
	for _, s := range suites {
		if strings.EqualFold(s.Name, strings.TrimSpace(name)) {
			return s, nil
		}
	}
	return Suite{}, fmt.Errorf("%w: unknown crypto suite %q", ErrBadKey, name)
}

// Key is one SRTP master key and salt with its suite, and optionally the
// MKI it is sent with. Its String form never shows the key.
type Key struct {
	Suite Suite
	// Master is key||salt.
	Master []byte
	// MKI is the master key identifier, empty when none is used.
	MKI []byte
	// Tag is the a=crypto tag.
	Tag int
}

// NewKey returns a random key for the suite.
func NewKey(s Suite) (Key, error) {
	b := make([]byte, s.KeyLen+s.SaltLen)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("srtpcheck: generating key: %w", err)
	}
	return Key{Suite: s, Master: b, Tag: 1}, nil
}

// ParseKey parses a suite name and an inline key: the base64 of key||salt
// with an optional "inline:" prefix and "|lifetime|mki:len" suffix.
func ParseKey(suite, inline string) (Key, error) {
	s, err := LookupSuite(suite)
	if err != nil {
		return Key{}, err
	}
	k := Key{Suite: s, Tag: 1}
	inline = strings.TrimPrefix(strings.TrimSpace(inline), "inline:")
	parts := strings.Split(inline, "|")
	raw, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	}
	if err != nil {
		return Key{}, fmt.Errorf("%w: inline key is not base64", ErrBadKey)
	}
	if len(raw) != s.KeyLen+s.SaltLen {
		return Key{}, fmt.Errorf("%w: %s needs %d bytes of key and salt, got %d", ErrBadKey, s.Name, s.KeyLen+s.SaltLen, len(raw))
	}
	k.Master = raw
	for _, p := range parts[1:] {
		// "|2^31" or "|1048576" is a lifetime; "|1:4" an MKI value and
		// length (RFC 4568 section 6.1).
		if v, l, ok := strings.Cut(p, ":"); ok {
			n, err1 := strconv.ParseUint(v, 10, 64)
			ln, err2 := strconv.Atoi(l)
			if err1 != nil || err2 != nil || ln < 1 || ln > 128 {
				return Key{}, fmt.Errorf("%w: bad MKI %q", ErrBadKey, p)
			}
			mki := make([]byte, ln)
			for i := ln - 1; i >= 0 && n > 0; i-- {
				mki[i] = byte(n)
				n >>= 8
			}
			k.MKI = mki
		}
	}
	return k, nil
}

// ParseCryptoLine parses an RFC 4568 crypto attribute, with or without the
// "a=crypto:" prefix: "<tag> <suite> inline:<key>[|lifetime][|mki:len]".
func ParseCryptoLine(line string) (Key, error) {
	line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "a=crypto:"))
	f := strings.Fields(line)
	if len(f) < 3 || !strings.HasPrefix(f[2], "inline:") {
		return Key{}, fmt.Errorf("%w: crypto attribute needs \"<tag> <suite> inline:<key>\"", ErrBadKey)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 {
		return Key{}, fmt.Errorf("%w: bad crypto tag", ErrBadKey)
	}
	k, err := ParseKey(f[1], f[2])
	if err != nil {
		return Key{}, err
	}
	k.Tag = tag
	return k, nil
}

// Inline returns the base64 key||salt.
func (k Key) Inline() string { return base64.StdEncoding.EncodeToString(k.Master) }

// CryptoLine returns the full SDP attribute "a=crypto:<tag> <suite>
// inline:<key>". It contains the key: never log it.
func (k Key) CryptoLine() string {
	return fmt.Sprintf("a=crypto:%d %s inline:%s", k.Tag, k.Suite.Name, k.Inline())
}

// String describes the key without revealing it.
func (k Key) String() string { return k.Suite.Name + " key (hidden)" }

// Context returns a new SRTP context for the key. The context is one-way
// and not safe for concurrent use.
func (k Key) Context(opts ...srtp.ContextOption) (*srtp.Context, error) {
	if len(k.Master) != k.Suite.KeyLen+k.Suite.SaltLen {
		return nil, fmt.Errorf("%w: key has %d bytes, %s needs %d", ErrBadKey, len(k.Master), k.Suite.Name, k.Suite.KeyLen+k.Suite.SaltLen)
	}
	if len(k.MKI) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(k.MKI))
	}
	c, err := srtp.CreateContext(k.Master[:k.Suite.KeyLen], k.Master[k.Suite.KeyLen:], k.Suite.Profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, k.Suite.Name, err)
	}
	return c, nil
}
