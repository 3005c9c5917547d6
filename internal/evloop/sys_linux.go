package evloop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollNow returns the ready events without blocking. epoll_pwait with a
// zero timeout never sleeps, so it is issued as a raw system call, without
// the scheduler's bookkeeping for calls that may block. EINTR (a signal,
// e.g. the runtime's preemption, arriving during the call) is retried.
func epollNow(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), 0, 0, 0)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// sleepRaw sleeps d nanoseconds (a coalesce window, at most the 2 ms the
// configurations allow) without giving up the thread's processor: Go's
// timers are coarser than the window, and a blocking system call would let
// the scheduler hand the processor to another thread only to take it back.
// A signal (goroutine preemption) may cut the sleep short (EINTR), which
// only ends the window early.
func sleepRaw(d int64) {
	ts := unix.NsecToTimespec(d)
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
