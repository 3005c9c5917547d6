//go:build !linux

package load

import "time"

// pacer sleeps with the Go runtime's timers where nanosleep is not used.
type pacer struct{}

func (p *pacer) init()                 {}
func (p *pacer) close()                {}
func (p *pacer) sleep(d time.Duration) { time.Sleep(d) }
