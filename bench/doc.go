// Package bench runs the standard benchmark suite behind `mediaedge bench
// suite` (docs/bench.md): it starts mediaedge and, when installed,
// rtpengine and coturn on loopback, drives each through the same cases
// with the load generators of bench/load, and writes a markdown report
// with plots. Everything it measures goes over the wire, as any client
// would: it imports no component of the daemon.
//
// The parts live in sub-packages named for their concern:
//
//   - bench/load generates SRTP and TURN load and checks every packet;
//   - bench/sut drives the systems under test (gateway API, rtpengine ng,
//     processes);
//   - bench/capture reads pcap and pcapng files and extracts RTP streams;
//   - bench/srtpcheck holds SRTP keys and verifies a pair of captures;
//   - bench/report holds the figures of a run and prints them;
//   - bench/benchtest holds fakes of the systems under test for tests.
package bench
