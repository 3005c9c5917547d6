// Package sut drives the systems under test of the bench: mediaedge's
// gateway through its session API (SetupGateway), rtpengine through its ng
// protocol (bencode over UDP), and the processes the suite starts
// (StartProcess, SocketPeerPID). It turns each setup into the load.Flow
// values that bench/load sends through it.
package sut
