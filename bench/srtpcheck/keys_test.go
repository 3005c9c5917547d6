package srtpcheck

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCryptoLine(t *testing.T) {
	k40 := strings.Repeat("A", 40)
	tests := []struct {
		in     string
		ok     bool
		suite  string
		tag    int
		mkiLen int
	}{
		{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k40, true, "AES_CM_128_HMAC_SHA1_80", 1, 0},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + k40 + "|2^31|1:4", true, "AES_CM_128_HMAC_SHA1_32", 2, 4},
		{"1 AEAD_AES_128_GCM inline:" + strings.Repeat("A", 38) + "==", true, "AEAD_AES_128_GCM", 1, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", false, "", 0, 0},
		{"1 NO_SUCH_SUITE inline:" + k40, false, "", 0, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 " + k40, false, "", 0, 0},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + k40, false, "", 0, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k40 + "|1:999", false, "", 0, 0},
	}
	for _, tc := range tests {
		k, err := ParseCryptoLine(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), k40) {
				t.Errorf("%q: error %v not ErrBadKey or shows the key", tc.in, err)
			}
			continue
		}
		if k.Suite.Name != tc.suite || k.Tag != tc.tag || len(k.MKI) != tc.mkiLen {
			t.Errorf("%q: %s tag %d mki %d", tc.in, k.Suite.Name, k.Tag, len(k.MKI))
		}
		if strings.Contains(k.String(), k40) || strings.Contains(k.String(), k.Inline()) {
			t.Error("String shows the key")
		}
		if k2, err := ParseCryptoLine(k.CryptoLine()); err != nil || k2.Inline() != k.Inline() {
			t.Errorf("CryptoLine does not round-trip: %v", err)
		}
	}
}
