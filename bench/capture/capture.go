package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// maxCaptureBytes bounds the size of a capture file ReadCapture accepts:
// captures are read whole into memory.
const maxCaptureBytes = 1 << 30

// Datagram is one UDP datagram found in a capture. Payload aliases the
// capture's memory and must not be modified.
type Datagram struct {
	// Time is the capture timestamp.
	Time time.Time
	// Src and Dst are the IP addresses and UDP ports.
	Src, Dst netip.AddrPort
	// Payload is the UDP payload as captured.
	Payload []byte
	// Truncated is set when the capture holds fewer payload bytes than the
	// UDP header announces (snap length).
	Truncated bool
}

// CaptureSummary counts what ReadCapture found besides UDP datagrams.
type CaptureSummary struct {
	// Format is "pcap" or "pcapng".
	Format string `json:"format"`
	// LinkTypes lists the link types seen, by name.
	LinkTypes []string `json:"link_types"`
	// Records is the number of packet records.
	Records int `json:"records"`
	// UDP is the number of UDP datagrams returned.
	UDP int `json:"udp"`
	// Other counts records that are not UDP over IPv4/IPv6 (ARP, TCP, ICMP,
	// unsupported link types, later IPv4 fragments).
	Other int `json:"other"`
	// Malformed counts records whose headers do not decode.
	Malformed int `json:"malformed"`
}

// ReadCaptureFile reads a pcap or pcapng file; see ReadCapture.
func ReadCaptureFile(path string) ([]Datagram, CaptureSummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, CaptureSummary{}, fmt.Errorf("capture: opening capture: %w", err)
	}
	defer f.Close()
	return ReadCapture(f)
}

// ReadCapture reads every UDP datagram of a pcap or pcapng capture (as
// written by tcpdump, tshark or dumpcap) on the link types Ethernet (with
// 802.1Q tags), Linux cooked capture v1 and v2, raw IP and BSD loopback. It
// returns an error wrapping ErrNotCapture when the input is not a capture
// and a *CaptureError wrapping ErrCorruptCapture when the file is cut short
// or malformed. Undecodable records inside a valid file are counted, not
// fatal.
func ReadCapture(r io.Reader) ([]Datagram, CaptureSummary, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCaptureBytes+1))
	if err != nil {
		return nil, CaptureSummary{}, fmt.Errorf("capture: reading capture: %w", err)
	}
	if len(data) > maxCaptureBytes {
		return nil, CaptureSummary{}, fmt.Errorf("capture: capture larger than %d bytes", maxCaptureBytes)
	}
	return parseCapture(data)
}

// pcap and pcapng magic numbers (first four bytes of the file).
const (
	magicPcapMicro = 0xa1b2c3d4
	magicPcapNano  = 0xa1b23c4d
	magicPcapng    = 0x0a0d0d0a
)

// packetSource is what both pcapgo readers provide.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

func parseCapture(data []byte) (dgs []Datagram, sum CaptureSummary, err error) {
	if len(data) < 4 {
		return nil, sum, &CaptureError{Err: fmt.Errorf("%w: file has %d bytes", ErrNotCapture, len(data))}
	}
	// pcapgo panics on a few malformed pcapng option values (an empty
	// if_filter, an if_tsresol that overflows); a hostile file must give an
	// error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			err = &CaptureError{Packet: sum.Records + 1, Err: fmt.Errorf("%w: %v", ErrCorruptCapture, p)}
		}
	}()
	var (
		src    packetSource
		linkOf func(gopacket.CaptureInfo) linkType
	)
	be, le := binary.BigEndian.Uint32(data), binary.LittleEndian.Uint32(data)
	switch {
	case be == magicPcapMicro || le == magicPcapMicro || be == magicPcapNano || le == magicPcapNano:
		sum.Format = "pcap"
		pr, err := pcapgo.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, sum, &CaptureError{Err: fmt.Errorf("%w: %w", ErrCorruptCapture, err)}
		}
		// The header's snap length is only advisory (tcpdump ignores it
		// when reading); bounding a record by the file size keeps a
		// hostile length from allocating gigabytes.
		pr.SetSnaplen(uint32(len(data)))
		order := binary.ByteOrder(binary.LittleEndian)
		if be == magicPcapMicro || be == magicPcapNano {
			order = binary.BigEndian
		}
		lt := linkType(order.Uint32(data[20:24]))
		linkOf = func(gopacket.CaptureInfo) linkType { return lt }
		src = pr
	case be == magicPcapng:
		sum.Format = "pcapng"
		canon, real, err := canonicalPcapng(data)
		if err != nil {
			return nil, sum, err
		}
		nr, err := pcapgo.NewNgReader(bytes.NewReader(canon), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, sum, &CaptureError{Err: fmt.Errorf("%w: %w", ErrCorruptCapture, err)}
		}
		linkOf = func(ci gopacket.CaptureInfo) linkType {
			if len(ci.AncillaryData) > 0 {
				if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					return real[uint8(lt)]
				}
			}
			return real[uint8(nr.LinkType())]
		}
		src = nr
	default:
		return nil, sum, &CaptureError{Err: fmt.Errorf("%w: unknown magic %08x", ErrNotCapture, be)}
	}

	dec := newLinkDecoder()
	seen := map[linkType]bool{}
	for {
		pkt, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("file ends inside a packet record")
			}
			return dgs, sum, &CaptureError{Packet: sum.Records + 1, Err: fmt.Errorf("%w: %w", ErrCorruptCapture, err)}
		}
		sum.Records++
		lt := linkOf(ci)
		if !seen[lt] {
			seen[lt] = true
			sum.LinkTypes = append(sum.LinkTypes, lt.String())
		}
		d, kind := dec.decode(lt, pkt)
		switch kind {
		case decodedUDP:
			d.Time = ci.Timestamp
			dgs = append(dgs, d)
			sum.UDP++
		case decodedOther:
			sum.Other++
		default:
			sum.Malformed++
		}
	}
	return dgs, sum, nil
}
