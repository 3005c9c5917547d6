package capture

import (
	"errors"
	"fmt"
)

// Sentinels callers branch on. Errors that carry data wrap one of these.
var (
	// ErrNotCapture means the input is neither a pcap nor a pcapng file.
	ErrNotCapture = errors.New("capture: not a pcap or pcapng capture")
	// ErrCorruptCapture means a capture file is truncated or malformed
	// after a valid file header.
	ErrCorruptCapture = errors.New("capture: corrupt or truncated capture")
	// ErrNoStreams means a capture holds no RTP stream to replay.
	ErrNoStreams = errors.New("capture: no RTP stream found")
)

// CaptureError says where in a capture file reading stopped.
type CaptureError struct {
	// Packet is the 1-based number of the packet record that failed; 0
	// for the file header.
	Packet int
	// Block is the 1-based pcapng block that failed its structure check,
	// 0 otherwise.
	Block int
	// Err wraps ErrNotCapture or ErrCorruptCapture and the reader's cause.
	Err error
}

func (e *CaptureError) Error() string {
	if e.Block > 0 {
		return fmt.Sprintf("%v (at pcapng block %d)", e.Err, e.Block)
	}
	if e.Packet == 0 {
		return fmt.Sprintf("%v (in the file header)", e.Err)
	}
	return fmt.Sprintf("%v (at packet record %d)", e.Err, e.Packet)
}

func (e *CaptureError) Unwrap() error { return e.Err }
