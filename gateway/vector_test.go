package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"
)

// The reference packet of libsrtp's own test driver (test/srtp_driver.c):
// AES_CM_128_HMAC_SHA1_80, master key e1f97a0d3e018be0d64fa32c06de4139,
// master salt 0ec675ad498afeebb6960b3aabe6, an RTP header with sequence
// number 0x1234, SSRC 0xcafebabe, and 16 bytes of 0xab, and the SRTP packet
// libsrtp makes of it. An independent implementation's output, checked here
// through the gateway's SDES parsing and its real data path.
const (
	libsrtpKey        = "e1f97a0d3e018be0d64fa32c06de4139"
	libsrtpSalt       = "0ec675ad498afeebb6960b3aabe6"
	libsrtpPlaintext  = "800f1234decafbadcafebabeabababababababababababababababab"
	libsrtpCiphertext = "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLibsrtpReferencePacket sends libsrtp's reference SRTP packet into the
// internal leg of a session whose internal peer key is libsrtp's test key,
// and checks that the cloud side gets exactly the reference plaintext under
// the gateway's cloud key, and that the gateway's own SDES parsing and
// context derivation reproduce libsrtp's ciphertext.
func TestLibsrtpReferencePacket(t *testing.T) {
	inline := base64.StdEncoding.EncodeToString(append(mustHex(t, libsrtpKey), mustHex(t, libsrtpSalt)...))
	line := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + inline

	enc := contextFor(t, line, false)
	got, err := enc.EncryptRTP(nil, mustHex(t, libsrtpPlaintext), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, libsrtpCiphertext); !bytes.Equal(got, want) {
		t.Fatalf("SDES key %s encrypts the reference packet to\n%x\nwant libsrtp's\n%x", "libsrtp test key", got, want)
	}

	g := startGateway(t, testConfig())
	internal, cloud := newPeer(t), newPeer(t)
	s := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Crypto: line, RTCPMux: true, Remote: internal.addr()},
		Cloud:    LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), RTCPMux: true, Remote: cloud.addr()},
	})
	internal.send(s.Internal.Local, mustHex(t, libsrtpCiphertext))
	out, _ := cloud.recv(2 * time.Second)
	if out == nil {
		t.Fatal("the reference packet was not forwarded")
	}
	if bytes.Equal(out, mustHex(t, libsrtpCiphertext)) {
		t.Fatal("forwarded unchanged: the cloud leg reuses the internal key")
	}
	dec := contextFor(t, s.Cloud.Crypto, true)
	plain, err := dec.DecryptRTP(nil, out, nil)
	if err != nil {
		t.Fatalf("cloud side cannot decrypt with the gateway's cloud key: %v", err)
	}
	if !bytes.Equal(plain, mustHex(t, libsrtpPlaintext)) {
		t.Fatalf("cloud side got\n%x\nwant the reference plaintext\n%x", plain, mustHex(t, libsrtpPlaintext))
	}
}
