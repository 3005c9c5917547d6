// Package srtpcheck holds SRTP keys (crypto suites, SDES a=crypto lines,
// contexts) and checks what a re-keying gateway put on the wire: Verify
// matches a capture of each side packet by packet (no plaintext, no key of
// the other leg, identical payloads, ROC carried across re-keys) and
// OpensWithAny tells whether a datagram authenticates with a set of keys.
// Key.String never shows key material.
package srtpcheck
