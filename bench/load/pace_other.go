//go:build !linux

package load

import "time"

// pacer sleeps with the Go runtime's timers where nanosleep is not used.
type pacer struct{}

func (p *pacer) init()                 {}
func (p *pacer) close()                {}
func (p *pacer) sleep(d time.Duration) { time.Sleep(d) }

// PinToCPU is not supported here: the suite's figures are then not per
// core, which its report says.
func PinToCPU(int) bool { return false }
