package load

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps with microsecond precision: Go's timers wake up about a
// millisecond late here, which would turn a paced send into 1 ms bursts.
// It locks the sender's goroutine to its thread and sleeps in nanosleep(2)
// with a 1 µs timer slack (PR_SET_TIMERSLACK; the default 50 µs slack
// would coarsen every sleep). The thread is discarded when the goroutine
// ends still locked, so the slack never leaks to other goroutines.
type pacer struct{}

func (p *pacer) init() {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
}

// close leaves the thread locked on purpose: see the type comment.
func (p *pacer) close() {}

func (p *pacer) sleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}
