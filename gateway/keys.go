package gateway

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// keyState is one master key of one leg direction: the key, its pion
// context (created on first use, so that an idle session holds only the
// key bytes), and the packets it protected or accepted. It belongs to the
// worker that owns its session; nothing else touches it.
type keyState struct {
	suite *Suite
	mk    MasterKey
	// epoch numbers the gateway's own keys on a leg (1, 2, ...); for peer
	// keys it is the number of the crypto line that brought it.
	epoch uint32
	// lifetime is the packet budget (0: RFC 3711 limits only).
	lifetime uint64
	// unencSRTP/unencSRTCP: authentication only (NULL-cipher session
	// parameters).
	unencSRTP, unencSRTCP bool
	// replay is the replay window for an inbound key; 0 for outbound.
	replay int

	ctx       *srtp.Context
	rtp, rtcp uint64
	// expires is when a superseded inbound key stops being accepted
	// (monotonic ns; 0: current key).
	expires int64
}

// newKeyState copies k's secrets so that the caller may wipe its own.
func newKeyState(suite *Suite, k MasterKey, epoch uint32, replay int) *keyState {
	ks := &keyState{suite: suite, epoch: epoch, lifetime: k.Lifetime, replay: replay}
	ks.mk.Key = append([]byte(nil), k.Key...)
	ks.mk.Salt = append([]byte(nil), k.Salt...)
	if k.MKI != nil {
		ks.mk.MKI = append([]byte(nil), k.MKI...)
	}
	ks.mk.Lifetime = k.Lifetime
	return ks
}

// generateKey returns a fresh random master key for suite.
func generateKey(suite *Suite, lifetime uint64, mki []byte) (MasterKey, error) {
	raw := make([]byte, suite.KeyLen+suite.SaltLen)
	if _, err := rand.Read(raw); err != nil {
		return MasterKey{}, fmt.Errorf("gateway: generating a key: %w", err)
	}
	return MasterKey{Key: raw[:suite.KeyLen:suite.KeyLen], Salt: raw[suite.KeyLen:], Lifetime: lifetime, MKI: mki}, nil
}

// context returns the pion context, creating it on first use.
func (k *keyState) context() (*srtp.Context, error) {
	if k.ctx != nil {
		return k.ctx, nil
	}
	opts := make([]srtp.ContextOption, 0, 5)
	if k.replay > 0 {
		opts = append(opts, srtp.SRTPReplayProtection(uint(k.replay)), srtp.SRTCPReplayProtection(uint(k.replay)))
	}
	if k.mk.MKI != nil {
		opts = append(opts, srtp.MasterKeyIndicator(k.mk.MKI))
	}
	if k.unencSRTP {
		opts = append(opts, srtp.SRTPNoEncryption())
	}
	if k.unencSRTCP {
		opts = append(opts, srtp.SRTCPNoEncryption())
	}
	ctx, err := srtp.CreateContext(k.mk.Key, k.mk.Salt, k.suite.Profile, opts...)
	if err != nil {
		// Only a bug can get here: keys are checked when parsed. The
		// pion error names lengths, never key bytes.
		return nil, fmt.Errorf("gateway: creating the %s context: %w", k.suite.Name, err)
	}
	k.ctx = ctx
	return ctx, nil
}

// crypto returns the a=crypto line announcing k (the gateway's own key).
func (k *keyState) crypto() *Crypto {
	return &Crypto{Tag: 1, Suite: k.suite, Keys: []MasterKey{k.mk},
		UnencryptedSRTP: k.unencSRTP, UnencryptedSRTCP: k.unencSRTCP}
}

// wipe overwrites the key bytes and drops the context. The session keys
// pion derived live inside crypto/aes and crypto/hmac values that cannot
// be cleared from outside; dropping the last reference is the best effort
// left.
func (k *keyState) wipe() {
	wipe(k.mk.Key)
	wipe(k.mk.Salt)
	k.ctx = nil
}

// mkiOffsetRTP returns where the MKI of an n-byte SRTP packet protected
// with k starts: before the HMAC tag, after the AEAD tag (which is part
// of the ciphertext).
func (k *keyState) mkiOffsetRTP(n int) int {
	tag := k.suite.RTPTag
	if k.suite.AEAD {
		tag = 0
	}
	return n - tag - len(k.mk.MKI)
}

// mkiOffsetRTCP is mkiOffsetRTP for SRTCP.
func (k *keyState) mkiOffsetRTCP(n int) int {
	tag := 10
	if k.suite.AEAD {
		tag = 0
	}
	return n - tag - len(k.mk.MKI)
}

// errReplay is pion/srtp's unexported "duplicated packet" sentinel,
// recovered once by replaying a packet, so that replays can be told apart
// from authentication failures without matching error text.
var (
	replayOnce sync.Once
	errReplay  error
)

func replaySentinel() error {
	replayOnce.Do(func() {
		key, salt := make([]byte, 16), make([]byte, 14)
		p := srtp.ProtectionProfileAes128CmHmacSha1_80
		enc, err1 := srtp.CreateContext(key, salt, p)
		dec, err2 := srtp.CreateContext(key, salt, p, srtp.SRTPReplayProtection(64))
		if err1 != nil || err2 != nil {
			return
		}
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 1}, Payload: []byte{0}}).Marshal()
		ct, err := enc.EncryptRTP(nil, pkt, nil)
		if err != nil {
			return
		}
		if _, err := dec.DecryptRTP(nil, ct, nil); err != nil {
			return
		}
		_, err = dec.DecryptRTP(nil, ct, nil)
		for err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u
				continue
			}
			break
		}
		errReplay = err
	})
	return errReplay
}

// dropReason classifies a pion decryption error.
func dropReason(err error) reason {
	switch {
	case errors.Is(err, srtp.ErrFailedToVerifyAuthTag), errors.Is(err, srtp.ErrMKINotFound):
		return reasonAuth
	case replaySentinel() != nil && errors.Is(err, replaySentinel()):
		return reasonReplay
	}
	return reasonMalformed
}
