package gateway

import (
	"strings"

	"github.com/pion/srtp/v3"
)

// Suite is one SRTP crypto suite as SDES (RFC 4568) names it, with the
// pion/srtp protection profile that implements it. Suites are immutable
// values from the suites table; compare them by pointer.
type Suite struct {
	// Name is the SDES crypto-suite name.
	Name string
	// Profile is the pion/srtp protection profile.
	Profile srtp.ProtectionProfile
	// KeyLen and SaltLen are the master key and master salt sizes in bytes.
	KeyLen, SaltLen int
	// RTPTag and RTCPTag are the bytes an SRTP or SRTCP packet carries
	// beyond the plain packet (authentication tag, AEAD tag, and for SRTCP
	// the 4-byte E flag and index), not counting an MKI.
	RTPTag, RTCPTag int
	// AEAD is set for the AES-GCM suites (RFC 7714): a failed
	// authentication destroys an in-place buffer, so trial decryption must
	// work on a copy.
	AEAD bool
	// Null marks suites that authenticate but do not encrypt; a leg uses
	// them only when its configuration allows it explicitly.
	Null bool
}

// The suites mediaedge supports. NULL cipher suites are listed so that the
// error for a leg that does not allow them is precise.
var (
	suiteAES128SHA80 = &Suite{Name: "AES_CM_128_HMAC_SHA1_80", Profile: srtp.ProtectionProfileAes128CmHmacSha1_80,
		KeyLen: 16, SaltLen: 14, RTPTag: 10, RTCPTag: 10 + 4}
	suiteAES128SHA32 = &Suite{Name: "AES_CM_128_HMAC_SHA1_32", Profile: srtp.ProtectionProfileAes128CmHmacSha1_32,
		KeyLen: 16, SaltLen: 14, RTPTag: 4, RTCPTag: 10 + 4}
	suiteAES256SHA80 = &Suite{Name: "AES_256_CM_HMAC_SHA1_80", Profile: srtp.ProtectionProfileAes256CmHmacSha1_80,
		KeyLen: 32, SaltLen: 14, RTPTag: 10, RTCPTag: 10 + 4}
	suiteAES256SHA32 = &Suite{Name: "AES_256_CM_HMAC_SHA1_32", Profile: srtp.ProtectionProfileAes256CmHmacSha1_32,
		KeyLen: 32, SaltLen: 14, RTPTag: 4, RTCPTag: 10 + 4}
	suiteAEAD128 = &Suite{Name: "AEAD_AES_128_GCM", Profile: srtp.ProtectionProfileAeadAes128Gcm,
		KeyLen: 16, SaltLen: 12, RTPTag: 16, RTCPTag: 16 + 4, AEAD: true}
	suiteAEAD256 = &Suite{Name: "AEAD_AES_256_GCM", Profile: srtp.ProtectionProfileAeadAes256Gcm,
		KeyLen: 32, SaltLen: 12, RTPTag: 16, RTCPTag: 16 + 4, AEAD: true}
	suiteNullSHA80 = &Suite{Name: "NULL_HMAC_SHA1_80", Profile: srtp.ProtectionProfileNullHmacSha1_80,
		KeyLen: 16, SaltLen: 14, RTPTag: 10, RTCPTag: 10 + 4, Null: true}
	suiteNullSHA32 = &Suite{Name: "NULL_HMAC_SHA1_32", Profile: srtp.ProtectionProfileNullHmacSha1_32,
		KeyLen: 16, SaltLen: 14, RTPTag: 4, RTCPTag: 10 + 4, Null: true}
)

// suites lists every suite, strongest-first within each family; the order
// is the order of DefaultConfig's allowed list.
var suites = []*Suite{
	suiteAEAD256, suiteAEAD128,
	suiteAES256SHA80, suiteAES256SHA32,
	suiteAES128SHA80, suiteAES128SHA32,
	suiteNullSHA80, suiteNullSHA32,
}

// SuiteNames returns the SDES names of every supported suite, NULL cipher
// suites last.
func SuiteNames() []string {
	out := make([]string, len(suites))
	for i, s := range suites {
		out[i] = s.Name
	}
	return out
}

// LookupSuite returns the suite named name (case-insensitive), or nil.
func LookupSuite(name string) *Suite {
	for _, s := range suites {
		if strings.EqualFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// maxOverhead is the largest number of bytes re-encryption can add to a
// packet: the largest SRTCP trailer plus the longest MKI we accept.
const maxOverhead = 16 + 4 + maxMKILen
