// Package ngcall holds the end-to-end tests of the gateway's ng control
// protocol with real peers on loopback: SIP calls through Kamailio
// between baresip agents (and the same call through rtpengine as the
// reference), and ng calls driven by bench's rtpengine client with
// bench's SRTP load and verification. It sits outside the gateway
// package because components may not import bench; it has no code of
// its own.
package ngcall
