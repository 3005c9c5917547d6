// Package capture reads what the bench and the end-to-end tests captured:
// pcap and pcapng files (Ethernet, Linux cooked v1 and v2, raw IP, IPv4
// and IPv6, loopback) into UDP datagrams, RTP streams extracted from them
// for replay, and a pcap writer for what a run sent. Capture files are
// untrusted input: a malformed one yields a CaptureError, never a panic.
package capture
