package gateway

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// key30 is 30 bytes (AES-128 key and salt) in base64; key46 is 46 bytes
// (AES-256), key28 28 bytes (AES-128-GCM), key44 44 bytes (AES-256-GCM).
var (
	key30 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x11}, 30))
	key46 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x22}, 46))
	key28 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x33}, 28))
	key44 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x44}, 44))
)

func TestParseCrypto(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		suite    string
		keys     int
		lifetime uint64
		mki      []byte
		wsh      int
		out      string // canonical form; "" = same as in
	}{
		// RFC 4568 section 4's example line.
		{name: "rfc4568 example", in: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
			suite: "AES_CM_128_HMAC_SHA1_80", keys: 1, lifetime: 1 << 20, mki: []byte{0, 0, 0, 1}},
		{name: "no prefix", in: "1 AES_CM_128_HMAC_SHA1_32 inline:" + key30, suite: "AES_CM_128_HMAC_SHA1_32", keys: 1,
			out: "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + key30},
		{name: "crypto: prefix", in: "crypto:7 AES_256_CM_HMAC_SHA1_80 inline:" + key46, suite: "AES_256_CM_HMAC_SHA1_80", keys: 1,
			out: "a=crypto:7 AES_256_CM_HMAC_SHA1_80 inline:" + key46},
		{name: "gcm 128", in: "a=crypto:2 AEAD_AES_128_GCM inline:" + key28, suite: "AEAD_AES_128_GCM", keys: 1},
		{name: "gcm 256", in: "a=crypto:3 AEAD_AES_256_GCM inline:" + key44, suite: "AEAD_AES_256_GCM", keys: 1},
		{name: "decimal lifetime", in: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1000", suite: "AES_CM_128_HMAC_SHA1_80",
			keys: 1, lifetime: 1000},
		{name: "mki only", in: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|258:2", suite: "AES_CM_128_HMAC_SHA1_80",
			keys: 1, mki: []byte{1, 2}},
		{name: "two keys", in: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^31|1:1;inline:" + key30 + "|2^31|2:1",
			suite: "AES_CM_128_HMAC_SHA1_80", keys: 2, lifetime: 1 << 31, mki: []byte{1}},
		{name: "wsh and kdr", in: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=0 WSH=512", suite: "AES_CM_128_HMAC_SHA1_80",
			keys: 1, wsh: 512, out: "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " WSH=512"},
		{name: "lower-case suite, no padding", in: "a=crypto:1 aes_256_cm_hmac_sha1_32 inline:" + strings.TrimRight(key46, "="),
			suite: "AES_256_CM_HMAC_SHA1_32", keys: 1, out: "a=crypto:1 AES_256_CM_HMAC_SHA1_32 inline:" + key46},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCrypto(tc.in)
			if err != nil {
				t.Fatalf("ParseCrypto: %v", err)
			}
			if c.Suite.Name != tc.suite || len(c.Keys) != tc.keys || c.Keys[0].Lifetime != tc.lifetime ||
				!bytes.Equal(c.Keys[0].MKI, tc.mki) || c.WSH != tc.wsh {
				t.Fatalf("got suite %s, %d keys, lifetime %d, mki %x, wsh %d", c.Suite.Name, len(c.Keys),
					c.Keys[0].Lifetime, c.Keys[0].MKI, c.WSH)
			}
			want := tc.out
			if want == "" {
				want = tc.in
			}
			if got := c.String(); got != want {
				t.Errorf("String() =\n %s\nwant\n %s", got, want)
			}
			if r := c.Redacted(); strings.Contains(r, "inline:"+key30[:8]) || strings.Contains(r, "PS1uQ") {
				t.Errorf("Redacted() leaks the key: %s", r)
			}
			c.Wipe()
			if !bytes.Equal(c.Keys[0].Key, make([]byte, len(c.Keys[0].Key))) {
				t.Error("Wipe left key bytes")
			}
		})
	}
}

func TestParseCryptoErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "want"},
		{"no key", "a=crypto:1 AES_CM_128_HMAC_SHA1_80", "want"},
		{"bad tag", "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:" + key30, "tag"},
		{"tag zero", "a=crypto:0 AES_CM_128_HMAC_SHA1_80 inline:" + key30, "tag"},
		{"unknown suite", "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + key30, "unsupported crypto suite"},
		{"short key", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key28, "key is 28 bytes"},
		{"long key for gcm", "a=crypto:1 AEAD_AES_128_GCM inline:" + key30, "key is 30 bytes"},
		{"not base64", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64!!!", "base64"},
		{"method", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 uri:" + key30, "inline"},
		{"lifetime too big", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^49", "lifetime"},
		{"lifetime zero", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|0", "lifetime"},
		{"mki too long", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:129", "MKI length"},
		{"mki value too big", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|256:1", "does not fit"},
		{"lifetime after mki", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:1|2^20", "lifetime must come once"},
		{"two keys without mki", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30, "MKIs"},
		{"two keys same mki", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:1;inline:" + key30 + "|1:1", "same MKI"},
		{"kdr", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=24", "KDR=0"},
		{"unauthenticated", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNAUTHENTICATED_SRTP", "refused"},
		{"fec", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " FEC_ORDER=FEC_SRTP", "unsupported session parameter"},
		{"too long", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.Repeat("A", 2000), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCrypto(tc.in)
			var ce *CryptoError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *CryptoError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), key30) || strings.Contains(err.Error(), key28) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

// FuzzParseCrypto: arbitrary attribute text never panics, and whatever
// parses formats back to a line that parses to the same keys.
func FuzzParseCrypto(f *testing.F) {
	for _, s := range []string{
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
		"a=crypto:1 AEAD_AES_256_GCM inline:" + key44 + " WSH=128",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^31|1:1;inline:" + key30 + "|2^31|2:1",
		"1 NULL_HMAC_SHA1_32 inline:" + key30 + " UNENCRYPTED_SRTP",
		"a=crypto:999999999 AES_256_CM_HMAC_SHA1_32 inline:" + key46 + "|1000|18446744073709551615:128",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCrypto(s)
		if err != nil {
			return
		}
		again, err := ParseCrypto(c.String())
		if err != nil {
			t.Fatalf("%s: formatted line does not parse: %v", c.Redacted(), err)
		}
		if len(again.Keys) != len(c.Keys) || again.Suite != c.Suite {
			t.Fatalf("round trip changed the attribute")
		}
		for i := range c.Keys {
			a, b := c.Keys[i], again.Keys[i]
			if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Salt, b.Salt) || !bytes.Equal(a.MKI, b.MKI) || a.Lifetime != b.Lifetime {
				t.Fatalf("round trip changed key %d", i)
			}
		}
	})
}
